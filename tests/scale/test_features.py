"""The feature cache: a frozen backbone's features, extracted once, streamed like make_dataset's images.

MobileNetV3Small with random frozen weights (weights=None: no download) on
24 images of 64 px, shards of 10 images: a 2 x 2 x 576 grid per image.
"""

import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest

from kcaption.data import FeatureStore, feature_dataset, image_dataset, make_dataset
from kcaption.errors import InputError, MissingFileError
from kcaption.models import CaptioningRNN
from kcaption.models.encoder import BACKBONES, ImageEncoder

BACKBONE = "mobilenet_v3_small"  # the cheapest keras.applications backbone
SIZE = 64
SHARD = 10  # 24 images: shards of 10, 10 and 4
BATCH = 8


class Stop(Exception):
    """Raised by a progress callback: an extraction interrupted after a shard."""


def extract(store, records, split, **kwargs):
    return store.extract(records, split, batch_size=BATCH, shard_size=SHARD, progress=False, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore(tmp_path_factory.mktemp("features"), backbone=BACKBONE, weights=None, image_size=SIZE)


@pytest.fixture(scope="module")
def cache(store, coco_records):
    return extract(store, coco_records, "train")


def features(cache, kind):
    return np.concatenate([np.asarray(batch) for batch in cache.batches(kind, batch_size=BATCH)])


def test_the_cache_holds_the_backbone_s_features_of_the_images(store, cache, coco_records):
    images = np.concatenate([np.asarray(b) for b in image_dataset(coco_records, batch_size=BATCH, image_size=SIZE)])
    # The reference: the keras.applications network itself, its last map averaged over the grid.
    grid = np.asarray(store.encoder().network(images * 255.0, training=False))  # (N, 2, 2, C)
    spatial = grid.reshape(len(images), -1, grid.shape[-1])
    assert features(cache, "spatial").shape == spatial.shape == (24, 4, 576)
    tolerance = {"rtol": 2e-3, "atol": 2e-3 * np.abs(spatial).max()}  # float16 on disk: 11 bits
    np.testing.assert_allclose(features(cache, "spatial"), spatial, **tolerance)
    np.testing.assert_allclose(features(cache, "pooled"), spatial.mean(axis=1), **tolerance)
    assert spatial.std(axis=0).mean() > 0.1 * np.abs(spatial).mean(), "random features alike for every image"

    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert {k: manifest[k] for k in ["backbone", "weights", "image_size", "dtype", "records", "complete"]} == {
        "backbone": BACKBONE, "weights": None, "image_size": SIZE, "dtype": "float16", "records": 24, "complete": True,
    }
    assert manifest["shapes"] == {"pooled": [576], "spatial": [4, 576]}
    assert [s["count"] for s in manifest["shards"]] == [10, 10, 4]
    assert sorted(p.name for p in cache.path.iterdir()) == sorted(
        ["manifest.json"] + [f"{k}-{i:05d}.tfrecord" for k in ("pooled", "spatial") for i in range(3)]
    )
    # Another split, another process's store: the same saved encoder (random weights drawn once).
    again = FeatureStore(store.path.parent, backbone=BACKBONE, weights=None, image_size=SIZE)
    val = extract(again, coco_records[:5], "val")
    np.testing.assert_array_equal(features(val, "pooled"), features(cache, "pooled")[:5])
    assert extract(again, coco_records, "train").manifest == cache.manifest  # complete: nothing to do


def test_a_cache_of_other_images_or_settings_is_never_read(store, cache, coco_records, tmp_path):
    for records, field in [(coco_records[:-1], "the number of images is 24, asked: 23"),
                           (coco_records[::-1], "the image list's fingerprint")]:
        with pytest.raises(InputError, match=f"{field}.*delete .*train, .*force=True"):
            store.open("train", records)
        with pytest.raises(InputError, match=field):
            extract(store, records, "train")
    with pytest.raises(InputError, match="other records"):
        feature_dataset(cache, coco_records[::-1], None)
    with pytest.raises(MissingFileError, match="holds no feature cache"):
        store.open("test", coco_records)
    # A store folder that is not what its name says (copied, renamed): its store.json is checked.
    copy = tmp_path / "features"
    for setting, value in [("backbone", "efficientnet_b0"), ("image_size", 96), ("weights", "imagenet")]:
        settings = {"backbone": BACKBONE, "weights": None, "image_size": SIZE, setting: value}
        target = FeatureStore(copy, **settings).path
        shutil.copytree(store.path / "train", target / "train")
        shutil.copy(store.path / "store.json", target)
        with pytest.raises(InputError, match=f"{setting} is .*asked: .*delete {target} or pass another"):
            FeatureStore(copy, **settings)
    rebuilt = extract(store, coco_records[:4], "small")
    assert extract(store, coco_records[:3], "small", force=True).manifest["records"] == 3 != len(rebuilt)


def test_an_interrupted_extraction_resumes_after_its_last_whole_shard(store, cache, coco_records):
    def stop_after_one_shard(done, total):
        raise Stop(done)

    with pytest.raises(Stop):
        store.extract(coco_records, "resumed", batch_size=BATCH, shard_size=SHARD, progress=stop_after_one_shard)
    folder = store.path / "resumed"
    first = (folder / "pooled-00000.tfrecord").stat()
    with pytest.raises(MissingFileError, match="holds an incomplete feature cache"):
        store.open("resumed", coco_records)
    calls = []
    resumed = store.extract(coco_records, "resumed", batch_size=BATCH, shard_size=99,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(20, 24), (24, 24)], "shard 0 extracted again, or the rest not in shards of the first run's size"
    assert (folder / "pooled-00000.tfrecord").stat().st_mtime_ns == first.st_mtime_ns
    assert not list(folder.glob("partial.*"))
    for kind in ("pooled", "spatial"):
        np.testing.assert_array_equal(features(resumed, kind), features(cache, kind))
    assert store.open("resumed", coco_records).manifest["complete"]


@pytest.mark.parametrize("captions", ["grouped", "all", "first", "random"])
def test_feature_batches_are_make_dataset_s_with_features_for_images(cache, coco_records, coco_vocab, captions):
    # max_length 11: captions of more than 9 words are skipped, and 10 images lose all theirs.
    options = {"batch_size": 5, "max_length": 11, "captions": captions, "seed": 3, "too_long": "skip"}
    ours = feature_dataset(cache, coco_records, coco_vocab, kind="spatial", **options)
    theirs = make_dataset(coco_records, coco_vocab, image_size=SIZE, **options)
    captions_shape = (None, 5, 10) if captions == "grouped" else (None, 10)
    assert ours.element_spec[0][0].shape.as_list() == [None, 4, 576]
    assert ours.element_spec[0][0].dtype == "float32"
    assert [s.shape.as_list() for s in (ours.element_spec[0][1], ours.element_spec[1])] == [list(captions_shape)] * 2
    ours, theirs = list(ours), list(theirs)
    assert len(ours) == len(theirs)
    kept = []
    for ((x, captions_in), captions_out), ((images, their_in), their_out) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(captions_in, their_in)
        np.testing.assert_array_equal(captions_out, their_out)
        assert x.shape[0] == images.shape[0]
        kept.append(np.asarray(x))
    dropped = len(coco_records) - len(np.unique(np.concatenate(kept).reshape(-1, 4 * 576), axis=0))
    assert dropped == 10, "the images left with no caption are not the ones make_dataset leaves out"


def test_shuffled_feature_batches_keep_each_image_with_its_captions(cache, coco_records, coco_vocab):
    options = {"batch_size": 7, "captions": "first"}
    pooled = features(cache, "pooled")  # (24, C) in record order
    first_caption = {i: tokens for i, ((_, tokens), _) in enumerate(
        make_dataset(coco_records, coco_vocab, image_size=SIZE, batch_size=1, captions="first"))}
    shuffled = feature_dataset(cache, coco_records, coco_vocab, shuffle=True, shuffle_buffer=5, **options)
    for _ in range(2):  # two epochs
        seen = []
        for (x, captions_in), _ in shuffled:
            for row, tokens in zip(np.asarray(x), np.asarray(captions_in), strict=True):
                index = int(np.argmin(np.abs(pooled - row).sum(axis=1)))
                np.testing.assert_array_equal(tokens, first_caption[index][0], err_msg=f"image {index}")
                seen.append(index)
        assert sorted(seen) == list(range(24))


def test_a_model_trained_on_features_captions_images_through_the_store_s_encoder(
    store, cache, coco_records, coco_vocab, tmp_path
):
    """What `kcaption caption` does with a model trained on a cache: images through its encoder.

    (The LSTM reads the pooled features; the attention captioners' spatial
    path is the same code, at 10x the test's time.)
    """
    from kcaption.train import compile_captioner

    model = CaptioningRNN(len(coco_vocab), cell_type="lstm", embed_dim=8, hidden_dim=16, encoder=store.encoder())
    captioner = compile_captioner(model, jit_compile=False)
    train = feature_dataset(cache, coco_records, coco_vocab, batch_size=12)  # pooled
    captioner.fit(train, epochs=1, verbose=0)
    assert not any(w.trainable for w in captioner.encoder.network.weights)

    captioner.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    images = next(iter(image_dataset(coco_records[:6], batch_size=6, image_size=SIZE)))
    cached = next(iter(cache.batches("pooled", batch_size=6)))
    (_, captions_in), _ = next(iter(train))
    logits = np.asarray(captioner((cached, captions_in[:6, 0])))
    scale = np.abs(logits).max()
    for through_images in (captioner, loaded):
        np.testing.assert_allclose(through_images((images, captions_in[:6, 0])), logits, atol=1e-2 * scale)
    # (One model's compiled sampling is traced for one kind of input: images or features.)
    np.testing.assert_array_equal(loaded.sample(images), captioner.sample(cached))


def test_imagenet_weights_that_cannot_load_stop_naming_the_file(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no internet")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for backbone, (constructor, _, url) in BACKBONES.items():
        monkeypatch.setattr(keras.applications, constructor, offline)
        file = url.rsplit("/", 1)[1]
        where = f"Put the file {file} \\(from {url}\\) at {tmp_path / 'keras' / 'models' / file}"
        with pytest.raises(MissingFileError, match=f"{backbone} \\(OSError: URL fetch.*{where}.*--weights none"):
            ImageEncoder(backbone, image_size=SIZE, weights="imagenet")
    store = FeatureStore(tmp_path / "features", backbone=BACKBONE, weights="imagenet", image_size=SIZE)
    with pytest.raises(MissingFileError, match="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"):
        store.encoder()
    assert not (store.path / "store.json").exists()


def test_an_image_tensorflow_cannot_decode_is_named(store, coco_records, tmp_path):
    from PIL import Image

    bad = tmp_path / "COCO_train2014_000000000013.jpg"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(bad, format="TIFF")  # PIL reads it; TF does not
    records = list(coco_records[:14])
    records[12] = dataclasses.replace(records[12], image=str(bad))
    with pytest.raises(InputError, match=f"Image '13', {bad}: TensorFlow cannot read or decode it"):
        extract(store, records, "undecodable")
    assert json.loads((store.path / "undecodable" / "manifest.json").read_text())["shards"][0]["count"] == 10
