"""COCO-format input at scale: the shapes export, bad files and entries, long captions.

Each bad input here was seen in a real run: a TIFF named .jpg stopped training
mid-epoch, two entries of one image id mixed their captions, a Karpathy label
"Train" dropped images silently, and a caption of thousands of words gave a
59,000-character error.
"""

import collections
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kcaption.data import (
    Vocabulary,
    encode_captions,
    export_shapes,
    make_shapes,
    read_caption_folder,
    read_coco,
)
from kcaption.data.records import (
    IMAGE_FORMATS,
    CaptionRecord,
    drop_long_captions,
    image_format,
)
from kcaption.data.tokenize import tokenize
from kcaption.errors import ExistingOutputError, InputError


@pytest.fixture
def coco_dir(tmp_path):
    """4 train images (ids 1-4), 2 val (5, 6) and 1 test (7), 32 px."""
    return export_shapes(tmp_path / "coco", n=4, n_val=2, n_test=1, seed=3, image_size=32)


def _ids(records):
    return [r.image_id for r in records]


def _json(path):
    return json.loads(path.read_text())


# ---------------------------------------------------------------- export_shapes


def test_export_shapes_writes_train_val_and_the_karpathy_split(coco_dir):
    shapes = make_shapes(7, seed=3, image_size=32)
    train, _ = read_coco(coco_dir, "train2014")
    val, report = read_coco(coco_dir, "val2014")
    assert _ids(train) == ["1", "2", "3", "4"] and _ids(val) == ["5", "6", "7"], (
        "image ids must be unique across the splits, as COCO's are"
    )
    assert report.clean and report.images == 3
    for record in train + val:
        assert record.captions == shapes[int(record.image_id) - 1].captions
    assert all("/train2014/COCO_train2014_" in r.image for r in train)
    for split, ids in [
        ("train", "1 2 3 4"),
        ("val", "5 6"),
        ("test", "7"),
        ("train+val", "1 2 3 4 5 6"),
    ]:
        records, report = read_coco(coco_dir, karpathy_split=split)
        assert _ids(records) == ids.split() and report.clean, split
    assert read_coco(coco_dir, karpathy_split="restval")[0] == []
    entry = _json(coco_dir / "dataset_coco.json")["images"][4]
    assert {k: entry[k] for k in ("filepath", "filename", "split", "cocoid")} == {
        "filepath": "val2014",
        "filename": "COCO_val2014_000000000005.jpg",
        "split": "val",
        "cocoid": 5,
    }
    assert [s["raw"] for s in entry["sentences"]] == shapes[4].captions
    assert [s["tokens"] for s in entry["sentences"]] == [tokenize(c) for c in shapes[4].captions]


def test_export_shapes_refuses_to_overwrite_a_coco_folder(coco_dir, tmp_path):
    before = {p: p.read_bytes() for p in coco_dir.rglob("*") if p.is_file()}
    with pytest.raises(ExistingOutputError, match="captions_train2014.json exists.*force"):
        export_shapes(coco_dir, n=4, seed=9, image_size=32)
    with pytest.raises(ExistingOutputError, match="captions_val2014.json exists"):
        export_shapes(coco_dir, n=2, split="val2014", image_size=32)
    after = {p: p.read_bytes() for p in coco_dir.rglob("*") if p.is_file()}
    assert after == before, "a refused export must leave the folder as it was"
    for path in (coco_dir / "annotations").iterdir():
        path.unlink()
    (coco_dir / "dataset_coco.json").unlink()
    with pytest.raises(ExistingOutputError, match="train2014 holds files"):
        export_shapes(coco_dir, n=4, image_size=32)
    export_shapes(coco_dir, n=3, n_val=1, n_test=0, seed=9, image_size=32, force=True)
    assert _ids(read_coco(coco_dir, karpathy_split="train+val")[0]) == ["1", "2", "3", "4"]
    # One split at a time (as older callers do) still fills a folder split by split.
    root = tmp_path / "by_split"
    export_shapes(root, n=2, split="train2014", image_size=32)
    export_shapes(root, n=1, split="val2014", image_size=32)
    assert len(read_coco(root, "train2014")[0]) == 2 and len(read_coco(root, "val2014")[0]) == 1
    assert not (root / "dataset_coco.json").exists()


# ---------------------------------------------------------------- image formats


def _image_bytes(kind):
    pixels = Image.fromarray(np.linspace(0, 255, 8 * 8 * 3).astype(np.uint8).reshape(8, 8, 3))
    mode, fmt, options = {
        "jpeg": ("RGB", "JPEG", {}),
        "jpeg-cmyk": ("CMYK", "JPEG", {}),
        "mpo": ("RGB", "MPO", {"save_all": True, "append_images": [pixels]}),  # a camera's JPEG
        "png": ("RGB", "PNG", {}),
        "png-16bit": ("I;16", "PNG", {}),
        "gif": ("RGB", "GIF", {}),
        "bmp": ("RGB", "BMP", {}),
        "bmp-gray": ("L", "BMP", {}),
        "bmp-1bit": ("1", "BMP", {}),
        "webp": ("RGB", "WEBP", {}),
        "tiff": ("RGB", "TIFF", {}),
        "ppm": ("RGB", "PPM", {}),
    }[kind]
    buffer = io.BytesIO()
    pixels.convert(mode).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "kind",
    [
        "jpeg",
        "jpeg-cmyk",
        "mpo",
        "png",
        "png-16bit",
        "gif",
        "bmp",
        "bmp-gray",
        "bmp-1bit",
        "webp",
        "tiff",
        "ppm",
        "text",
    ],
)
def test_image_format_accepts_what_tensorflow_decodes(tmp_path, kind):
    path = tmp_path / "image.jpg"  # the name says nothing: TensorFlow reads the first bytes
    path.write_bytes(b"not an image at all" if kind == "text" else _image_bytes(kind))
    try:  # the pipeline's decoder, as it calls it
        tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
        decodes = True
    except tf.errors.InvalidArgumentError:
        decodes = False
    kind_read = image_format(path)
    assert (kind_read in IMAGE_FORMATS) == decodes, (
        f"image_format says {kind_read!r} for a {kind} file, but tf.io.decode_image "
        f"{'reads' if decodes else 'fails on'} it"
    )
    if kind == "text":
        assert kind_read is None


def test_read_coco_skips_a_tiff_named_jpg_even_without_check_images(coco_dir, caplog):
    tiff = coco_dir / "train2014" / "COCO_train2014_000000000002.jpg"
    Image.open(tiff).save(tiff, format="TIFF")
    for check_images in (False, True):
        records, report = read_coco(coco_dir, "train2014", check_images=check_images)
        assert _ids(records) == ["1", "3", "4"]
        assert report.unsupported_images == {tiff.name: "TIFF"} and report.skipped_images == 1
    text = str(report)
    assert f"unsupported format, not JPEG/PNG/GIF/BMP/WEBP: {tiff.name} (TIFF)" in text
    assert text in caplog.text


# ---------------------------------------------------------------- repeated entries


def test_read_coco_refuses_one_id_for_two_files(coco_dir):
    path = coco_dir / "annotations" / "captions_train2014.json"
    data = _json(path)
    data["images"][2]["id"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_coco(coco_dir, "train2014")
    message = str(info.value)
    for part in ["captions_train2014.json", "images[1] and images[2]", "same id 2"]:
        assert part in message, message
    assert "'COCO_train2014_000000000002.jpg' and 'COCO_train2014_000000000003.jpg'" in message


def test_read_coco_reads_a_repeated_entry_once(coco_dir):
    path = coco_dir / "annotations" / "captions_train2014.json"
    data = _json(path)
    data["images"].append(dict(data["images"][0]))
    path.write_text(json.dumps(data))
    records, report = read_coco(coco_dir, "train2014")
    assert _ids(records) == ["1", "2", "3", "4"] and len(records[0].captions) == 5
    assert report.repeated_entries == 1 and "read once 1 repeated entries" in str(report)


def test_read_coco_karpathy_reports_unknown_splits_and_images_in_two_splits(coco_dir):
    path = coco_dir / "dataset_coco.json"
    data = _json(path)
    images = data["images"]
    images[0]["split"] = "Train"  # image 1: a label the reader does not know
    images.append(dict(images[1], split="test"))  # image 2: in train, then test
    images.append(dict(images[2]))  # image 3: the same entry twice
    path.write_text(json.dumps(data))
    train, report = read_coco(coco_dir, karpathy_split="train")
    assert _ids(train) == ["2", "3", "4"]
    assert report.unknown_splits == {"Train": ["1"]}
    assert report.split_conflicts == {"2": ["train", "test"]} and report.repeated_entries == 1
    text = str(report)
    assert "ignored 1 images of unknown split 'Train' (ids: 1)" in text
    assert "1 images listed in several splits, kept in the first only (2 in train+test)" in text
    test, _ = read_coco(coco_dir, karpathy_split="test")
    assert _ids(test) == ["7"], "an image of the training split must not be tested on"
    images.append(dict(images[3], filename="COCO_train2014_000000000001.jpg"))
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"images\[3\] and images\[9\] have the same cocoid 4"):
        read_coco(coco_dir, karpathy_split="train")


# ---------------------------------------------------------------- long captions


def test_a_long_caption_is_cut_in_messages():
    vocab = Vocabulary.build(["a red circle"])
    caption = "a red circle " * 2000
    with pytest.raises(ValueError, match="6000 tokens, more than max_length - 2 = 15") as info:
        vocab.encode(caption)
    assert len(str(info.value)) < 300, f"a {len(str(info.value))}-character message"
    assert f"{caption[:60]!r}..." in str(info.value)
    with pytest.raises(ValueError, match="Image 'x': Caption has 6000 tokens") as info:
        encode_captions([CaptionRecord("x", None, [caption])], vocab)
    assert len(str(info.value)) < 300


def test_drop_long_captions_keeps_what_encodes_and_the_vocabulary_never_sees_the_rest():
    fits = "a b c d e f g h i j k l m n o"  # 15 tokens: max_length 17 encodes it
    punctuated = "a, b c d e f g h i j k l m n o"  # 16 tokens: "," counts
    records = [
        CaptionRecord("1", "1.jpg", [fits, punctuated, "one two"]),
        CaptionRecord("2", "2.jpg", ["long " * 20 + "unseen"]),
        CaptionRecord("3", "3.jpg", ["three"]),
    ]
    kept, report = drop_long_captions(records, max_length=17)
    assert [(r.image_id, r.captions) for r in kept] == [("1", [fits, "one two"]), ("3", ["three"])]
    assert kept[1] is records[2] and records[0].captions[1] == punctuated, "records are not changed"
    assert (report.captions, report.too_long, report.images_without_captions) == (3, 2, ["2"])
    vocab = Vocabulary.build(c for r in kept for c in r.captions)
    assert "long" not in vocab.word_to_id and "unseen" not in vocab.word_to_id
    for record in records:  # the same count as Vocabulary.encode
        for caption in record.captions:
            if caption in kept[0].captions + kept[1].captions:
                vocab.encode(caption, max_length=17)
            else:
                with pytest.raises(ValueError, match="more than max_length - 2"):
                    vocab.encode(caption, max_length=17)
    assert str(report).startswith("kept 3 captions of at most 15 tokens; dropped 2 longer (e.g. ")
    assert "(21 tokens)" in str(report) and "dropped 1 images left with no caption (ids: 2)" in str(
        report
    )


def test_vocabulary_build_counts_as_tokenize_does_one_caption_at_a_time():
    words = [
        "ΟΔΟΣ",
        "İstanbul",
        "dog,",
        "a",
        "Cat.",
    ]  # final sigma, a dotted capital I, punctuation
    captions = [" ".join(words[(k + j) % 5] for j in range(k % 4 + 1)) for k in range(5000)]
    counts = collections.Counter(w for c in captions for w in tokenize(c))  # more than one chunk
    expected = sorted(counts, key=lambda w: (-counts[w], w))
    assert Vocabulary.build(captions).words[4:] == expected
    assert Vocabulary.build(iter(captions), min_count=1500).words[4:] == [
        w for w in expected if counts[w] >= 1500
    ]


# ---------------------------------------------------------------- any COCO-format folder


def _outside_test_set(coco_dir, tmp_path, images="images", name="captions.json"):
    """A NICE-style folder made from the export: DIR/<name> and the val2014 images in DIR/<images>."""
    folder = tmp_path / "outside"
    (folder / images if images else folder).mkdir(parents=True)
    for path in (coco_dir / "val2014").iterdir():
        (folder / images / path.name if images else folder / path.name).write_bytes(path.read_bytes())
    (folder / name).write_text((coco_dir / "annotations" / "captions_val2014.json").read_text())
    return folder


@pytest.mark.parametrize("images", ["images", ""])
def test_read_caption_folder_finds_the_captions_file_and_the_images(coco_dir, tmp_path, images):
    expected, _ = read_coco(coco_dir, "val2014")
    folder = _outside_test_set(coco_dir, tmp_path, images=images)
    records, report = read_caption_folder(folder)
    assert report.clean and _ids(records) == _ids(expected) == ["5", "6", "7"]
    assert [r.captions for r in records] == [r.captions for r in expected]
    assert all(Image.open(r.image).size == (32, 32) for r in records)


def test_read_caption_folder_asks_which_captions_file_when_there_are_two(coco_dir, tmp_path):
    folder = _outside_test_set(coco_dir, tmp_path)
    (folder / "other.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds 2 \.json files \(captions\.json, other\.json\).*--captions"):
        read_caption_folder(folder)
    records, _ = read_caption_folder(folder, captions=folder / "captions.json")
    assert len(records) == 3
    with pytest.raises(FileNotFoundError, match="no captions file"):
        read_caption_folder(folder / "images")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_caption_folder(tmp_path / "nowhere")
