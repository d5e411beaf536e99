"""Data: vocabulary and tokenization, the shapes and COCO datasets, the tf.data pipeline.

Everything a captioner reads goes through one record type (`CaptionRecord`)
and one pipeline (`make_dataset`):

    records = load_shapes("train")                     # or read_coco(root)[0]
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    ds = make_dataset(records, vocab, batch_size=64, shuffle=True)

or, with a frozen backbone's features cached once on disk (`FeatureStore`,
`feature_dataset`), the same batches with features in place of the images.
"""

from kcaption.data.coco import (
    ReadReport,
    download_coco,
    export_shapes,
    read_caption_folder,
    read_coco,
)
from kcaption.data.features import FeatureCache, FeatureStore, feature_dataset
from kcaption.data.pipeline import EncodeReport, encode_captions, image_dataset, make_dataset
from kcaption.data.records import CaptionRecord, ShapeObject
from kcaption.data.shapes import caption_objects, load_shapes, make_shapes
from kcaption.data.tokenize import tf_tokenize, tokenize
from kcaption.data.vocab import (
    END,
    NULL,
    SPECIAL_TOKENS,
    START,
    UNK,
    Vocabulary,
    decode_captions,
)

__all__ = [
    "CaptionRecord",
    "EncodeReport",
    "FeatureCache",
    "FeatureStore",
    "END",
    "NULL",
    "ReadReport",
    "SPECIAL_TOKENS",
    "START",
    "ShapeObject",
    "UNK",
    "Vocabulary",
    "caption_objects",
    "decode_captions",
    "download_coco",
    "encode_captions",
    "export_shapes",
    "feature_dataset",
    "image_dataset",
    "load_shapes",
    "make_dataset",
    "make_shapes",
    "read_caption_folder",
    "read_coco",
    "tf_tokenize",
    "tokenize",
]
