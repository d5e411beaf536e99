"""Frozen-backbone features, computed once and cached on disk in shards.

    store = FeatureStore("features", backbone="efficientnet_b0", image_size=224)
    cache = store.extract(train_records, "train")      # once; an interrupted run resumes
    ds = feature_dataset(cache, train_records, vocab, kind="pooled", captions="grouped", shuffle=True)
    model = CaptioningRNN(len(vocab), encoder=store.encoder())  # fed features, it captions images too

Why: a frozen backbone gives an image the same features in every epoch, so it
runs once over the images (one forward pass) instead of once per epoch
(forward, on every step), and training reads (N, C) or (N, L, C) features
instead of decoding and encoding pixels (`bench/bench_scale.py` measures it).

A store holds one encoder, a (backbone, image size, weights), and one cache
per split, in its own folder: FOLDER/<backbone>-<S>px-<imagenet|random>, so
one features folder keeps the stores of several backbones apart.

    STORE/store.json                 the backbone, weights, image size, preprocessing, weights hash
    STORE/encoder.weights.h5         the frozen encoder, saved once: every split and the model
                                     trained on them see these weights (random ones too)
    STORE/<split>/manifest.json      which images (a fingerprint), feature shapes and dtype, the
                                     shards written, complete or not (rewritten after each shard)
    STORE/<split>/pooled-00000.tfrecord   per image: its record index, (C,) float16
    STORE/<split>/spatial-00000.tfrecord  per image: its record index, (L, C) float16

Pooled and spatial features sit in files of their own, so a captioner that
reads the pooled vector (rnn, lstm) never reads the grids, 49x bigger at 224 px.
A cache whose manifest does not match what is asked (other images, backbone,
size, weights) is never read: `InputError`, naming the field.

Reading streams: shards read in parallel (in a new order each epoch when
shuffled), a bounded shuffle buffer, prefetch. Only the captions' token ids
are held per image (as `make_dataset` does), never the features.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kcaption.data.pipeline import (
    AUTOTUNE,
    _caption_batches,
    _check_arguments,
    _encode,
    image_dataset,
)
from kcaption.errors import InputError, MissingFileError

FORMAT = 1  # the layout's version, in every manifest
KINDS = ("pooled", "spatial")
DTYPE = "float16"  # on disk; the pipeline casts to float32
SHUFFLE_FEATURES = 1024  # shuffle buffer, in serialised images (one shard by default)
READERS = 4  # shards read at once
# Between the image files and the backbone, the same in every store (see `ImageEncoder.call`).
PREPROCESSING = (
    "tf.io.decode_image (3 channels); tf.image.resize to S x S (bilinear, antialias, rounded to "
    "uint8) unless already S x S; / 255; x 255 and the backbone's preprocess_input"
)
_PREPROCESS = {  # each backbone's own step, named in the manifest
    "mobilenet_v3_small": "none (rescales inside the model)",
    "efficientnet_b0": "none (rescales inside the model)",
    "resnet50": "keras.applications.resnet50.preprocess_input (caffe: BGR, ImageNet mean)",
}


class FeatureStore:
    """A folder of cached backbone features: one frozen encoder, one cache per split.

    Args:
        folder: the features folder; the store is its sub-folder
            <backbone>-<image_size>px-<imagenet|random> (`path`), created on first use.
        backbone: a keras.applications backbone of `ImageEncoder` (not "small_cnn":
            it trains with the captioner, so its features change).
        weights: "imagenet" or None (random frozen weights, made once and saved).
        image_size: side S of the images the backbone sees.

    Raises:
        InputError: the folder is a store of another backbone, weights or size.

    Example:
        >>> store = FeatureStore(tmp, backbone="mobilenet_v3_small", weights=None, image_size=64)
        >>> cache = store.extract(records, "train", progress=False)
        >>> next(iter(cache.batches("pooled"))).shape
        TensorShape([64, 576])
    """

    def __init__(self, folder, *, backbone="efficientnet_b0", weights="imagenet", image_size=224):
        from kcaption.models.encoder import BACKBONES

        if backbone not in BACKBONES:
            raise InputError(
                f"A feature store needs a frozen keras.applications backbone, one of {sorted(BACKBONES)}"
                " (small_cnn trains with the captioner: its features change every step). "
                f"Received: backbone={backbone!r}"
            )
        if weights not in ("imagenet", None):
            raise InputError(f"`weights` must be 'imagenet' or None. Received: weights={weights!r}")
        if not isinstance(image_size, int) or image_size < 32:
            raise InputError(f"image_size must be an int >= 32. Received: image_size={image_size!r}")
        self.path = Path(folder) / f"{backbone}-{image_size}px-{weights or 'random'}"
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self._encoder_sha256 = None
        self._compiled = None
        self._lock = None  # the open lock file while this process holds it
        saved = _read_json(self.path / "store.json")
        if saved is not None:
            remedy = f"delete {self.path} or pass another features folder"
            _check(self.path / "store.json", saved, self._settings(), remedy)

    def _settings(self):
        return {
            "format": FORMAT,
            "backbone": self.backbone,
            "weights": self.weights,
            "image_size": self.image_size,
            "preprocessing": f"{PREPROCESSING}: {_PREPROCESS[self.backbone]}",
        }

    def encoder(self):
        """A new frozen, built `ImageEncoder` with the weights that made (or will make) every cache here.

        The store's first call makes the weights (downloading ImageNet's, or
        drawing random ones) and saves them as STORE/encoder.weights.h5; every
        call, in any process, returns an encoder loaded from that file (no
        download), made in the caller's distribution scope and dtype policy.
        """
        from kcaption.models.encoder import ImageEncoder

        path = self.path / "encoder.weights.h5"
        with self._locked():
            saved = _read_json(self.path / "store.json")
            if saved is None or not path.exists():
                made = ImageEncoder(self.backbone, image_size=self.image_size, weights=self.weights, frozen=True)
                partial = path.with_name("partial." + path.name)  # save_weights wants a .weights.h5 name
                made.network.save_weights(partial)
                partial.replace(path)
                saved = {**self._settings(), "encoder_sha256": _weights_sha256(made)}
                _write_json(self.path / "store.json", saved)
        encoder = ImageEncoder(self.backbone, image_size=self.image_size, weights=None, frozen=True)
        encoder.build((None, self.image_size, self.image_size, 3))
        encoder.network.load_weights(path)
        digest = _weights_sha256(encoder)
        if digest != saved["encoder_sha256"]:
            raise InputError(
                f"{path} does not hold the weights {self.path / 'store.json'} was made with "
                f"(sha256 {digest[:12]}, expected {saved['encoder_sha256'][:12]}): "
                f"delete {self.path} or pass another features folder."
            )
        self._encoder_sha256 = digest
        return encoder

    def extract(self, records, split, *, batch_size=32, shard_size=1024, progress=True, force=False):
        """Run the encoder over the records' images once; write split's pooled and spatial features.

        Each shard is written under a temporary name and renamed when whole,
        then the manifest is rewritten: an interrupted extraction resumes from
        its last whole shard. A complete matching cache is returned as it is.

        Args:
            records: the split's `CaptionRecord`s (files or arrays), in the order
                `feature_dataset` and `FeatureCache.batches` will use.
            split: the cache's name within the store, e.g. "train".
            batch_size: images per forward pass.
            shard_size: images per shard (a resumed extraction keeps its first run's).
            progress: print progress on stderr (True), nothing (False), or a
                callable `progress(images_done, images_total)` called after each shard.
            force: delete the split's cache first and extract it again.

        Returns:
            The split's `FeatureCache`.

        Raises:
            InputError: the split's cache was made from other images, or an image
                cannot be decoded (named).
        """
        if not records:
            raise InputError("FeatureStore.extract needs at least one record. Received: records=[]")
        for name, value in [("batch_size", batch_size), ("shard_size", shard_size)]:
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an int >= 1. Received: {name}={value!r}")
        folder = self._split_folder(split)
        with self._locked():  # one extraction at a time (workers sharing a folder)
            if force and folder.exists():
                shutil.rmtree(folder)
            manifest = self._matching_manifest(split, records)
            if manifest is not None and manifest["complete"]:
                return FeatureCache(folder, manifest)
            if manifest is None:
                folder.mkdir(parents=True, exist_ok=True)
                manifest = {
                    **self._expected(records),
                    "dtype": DTYPE,
                    "shapes": None,
                    "shard_size": shard_size,
                    "shards": [],
                    "complete": False,
                }
            size = manifest["shard_size"]
            report = _progress(progress, split, len(records), len(manifest["shards"]) * size)
            for first in range(len(manifest["shards"]) * size, len(records), size):
                shard = records[first : first + size]
                names = _write_shard(
                    folder, len(manifest["shards"]), shard, first, self._encode(), batch_size, self.image_size
                )
                manifest["shards"].append({"first": first, "count": len(shard), **names["files"]})
                manifest["shapes"] = names["shapes"]
                manifest["complete"] = first + len(shard) == len(records)
                _write_json(folder / "manifest.json", manifest)
                report(first + len(shard))
            return FeatureCache(folder, manifest)

    def open(self, split, records):
        """The split's complete cache, checked against the records, without extracting.

        Raises:
            MissingFileError: no cache for the split, or an incomplete one.
            InputError: a cache made from other images or by another encoder.
        """
        manifest = self._matching_manifest(split, records)
        folder = self._split_folder(split)
        if manifest is None or not manifest["complete"]:
            state = "no" if manifest is None else "an incomplete"
            raise MissingFileError(
                f"{folder} holds {state} feature cache: extract it first "
                "(`kcaption features`, or FeatureStore.extract; an interrupted one resumes)."
            )
        return FeatureCache(folder, manifest)

    @contextlib.contextmanager
    def _locked(self):
        """Hold the store's lock file: another process (a second worker) waits, then finds the work done.

        Re-entrant within the process (`extract` makes the encoder under it).
        """
        if self._lock is not None:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "w") as self._lock:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock = None

    def _encode(self):
        """The encoder as one compiled function: float32 images (N, S, S, 3) -> (pooled, spatial)."""
        if self._compiled is None:
            encoder = self.encoder()  # kept by the function
            spec = tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.float32)
            self._compiled = tf.function(lambda images: encoder(images, training=False), input_signature=[spec])
        return self._compiled

    def _split_folder(self, split):
        if not isinstance(split, str) or not split or split != Path(split).name or split.startswith("."):
            raise InputError(f"split must be a plain folder name, e.g. 'train'. Received: split={split!r}")
        return self.path / split

    def _expected(self, records):
        """What a manifest of these records must say (the encoder is made or loaded for its hash)."""
        if self._encoder_sha256 is None:
            self.encoder()
        return {
            **self._settings(),
            "encoder_sha256": self._encoder_sha256,
            "records": len(records),
            "fingerprint": records_fingerprint(records),
        }

    def _matching_manifest(self, split, records):
        """The split's manifest when there is one (InputError if it does not match), else None."""
        path = self._split_folder(split) / "manifest.json"
        manifest = _read_json(path)
        if manifest is not None:
            remedy = f"delete {path.parent}, pass another features folder, or rebuild it (force=True, --force)"
            _check(path, manifest, self._expected(records), remedy)
        return manifest


class FeatureCache:
    """One split's cached features: its manifest and shards (made by `FeatureStore.extract`).

    Attributes:
        path: the split's folder.
        manifest: the parsed manifest.json.
        shapes: {"pooled": (C,), "spatial": (L, C)}, per image.
    """

    def __init__(self, path, manifest):
        self.path = Path(path)
        self.manifest = manifest
        self.shapes = {kind: tuple(shape) for kind, shape in manifest["shapes"].items()}

    def __len__(self):
        return self.manifest["records"]

    def files(self, kind):
        """The shard files of one kind, in record order."""
        _check_kind(kind)
        return [str(self.path / shard[kind]) for shard in self.manifest["shards"]]

    def features(self, kind, *, shuffle=False, seed=None, shuffle_buffer=SHUFFLE_FEATURES):
        """A dataset of (record index int64, features float16 (C,) or (L, C)), one element per image.

        In record order; shuffled: shards in a new order each epoch, read
        `READERS` at a time, interleaved, through a buffer of `shuffle_buffer`.
        """
        files = tf.data.Dataset.from_tensor_slices(self.files(kind))
        if shuffle:
            files = files.shuffle(len(self.files(kind)), seed=seed, reshuffle_each_iteration=True)
        shape = self.shapes[kind]
        spec = {
            "index": tf.io.FixedLenFeature([], tf.int64),
            "features": tf.io.FixedLenFeature([], tf.string),
        }

        def parse(example):
            parsed = tf.io.parse_single_example(example, spec)
            features = tf.io.parse_tensor(parsed["features"], out_type=tf.float16)
            return parsed["index"], tf.ensure_shape(features, shape)

        # In order, a whole shard is one block: the shards come out one after the other,
        # READERS of them read ahead in parallel. Shuffled, the open shards' images mix.
        records = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=READERS,
            block_length=1 if shuffle else self.manifest["shard_size"],
            num_parallel_calls=AUTOTUNE,
            deterministic=not shuffle or seed is not None,
        )
        if shuffle:
            records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return records.map(parse, num_parallel_calls=AUTOTUNE)

    def batches(self, kind, batch_size=64):
        """Float32 feature batches (N, C) or (N, L, C) in record order (to caption or score a split)."""
        return (
            self.features(kind)
            .map(lambda index, features: tf.cast(features, tf.float32), num_parallel_calls=AUTOTUNE)
            .batch(batch_size, num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE)
        )


def feature_dataset(
    cache,
    records,
    vocab,
    *,
    kind="pooled",
    batch_size=64,
    max_length=17,
    captions="grouped",
    shuffle=False,
    seed=None,
    too_long="skip",
    drop_remainder=False,
    shuffle_buffer=SHUFFLE_FEATURES,
):
    """`make_dataset` for cached features: ((features, captions_in), captions_out) batches.

    The same caption modes and element structure as `make_dataset`, with the
    image replaced by its cached features, float32 (N, C) (kind="pooled": rnn,
    lstm) or (N, L, C) (kind="spatial": attn, transformer); captions (N, T),
    or (N, GROUP_SIZE, T) grouped. Not shuffled, its batches are make_dataset's
    for the same records and arguments, the images swapped for features.

    Args:
        cache: a `FeatureCache` of these records (`FeatureStore.extract` / `open`).
        records: the records the cache was made from, in the same order (checked).
        vocab, batch_size, max_length, captions, seed, too_long, drop_remainder:
            as in `make_dataset`.
        kind: "pooled" or "spatial".
        shuffle: reshuffle every epoch: the order of the shards, then a buffer
            of `shuffle_buffer` images (and the pairs, with "all").
    """
    _check_kind(kind)
    _check_arguments("feature_dataset", records, captions, batch_size=batch_size, max_length=max_length)
    if len(records) != len(cache) or records_fingerprint(records) != cache.manifest["fingerprint"]:
        raise InputError(
            f"The feature cache {cache.path} was made from other records ({len(cache)} images) than "
            f"these {len(records)}: pass the records it was extracted from, in the same order."
        )
    kept, tokens, counts = _encode("feature_dataset", records, vocab, max_length, too_long)
    row = np.full(len(records), -1, dtype=np.int64)  # record index -> row of tokens, -1 if dropped
    row[kept] = np.arange(len(kept))
    pair = _caption_batches(captions, counts, batch_size, drop_remainder, shuffle, seed, _to_float32)
    row, tokens, counts = tf.constant(row), tf.constant(tokens), tf.constant(counts)

    def with_captions(index, features):
        return features, tf.gather(tokens, row[index]), tf.gather(counts, row[index])

    features = cache.features(kind, shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer)
    if len(kept) < len(records):
        features = features.filter(lambda index, _: row[index] >= 0)
    return (
        features.map(with_captions, num_parallel_calls=AUTOTUNE)
        .apply(tf.data.experimental.assert_cardinality(len(kept)))
        .apply(pair)
    )


def _to_float32(features):
    return tf.cast(features, tf.float32)


def records_fingerprint(records):
    """sha256 of the records' image ids and images (absolute paths, or the arrays' bytes), in order."""
    digest = hashlib.sha256()
    for record in records:
        image = record.image
        what = hashlib.sha1(image.tobytes()).hexdigest() if isinstance(image, np.ndarray) else os.path.abspath(image)
        digest.update(f"{record.image_id}\0{what}\0".encode())
    return digest.hexdigest()


def _write_shard(folder, number, records, first, encode, batch_size, image_size):
    """Encode one shard's images; write pooled and spatial TFRecords (temporary names, renamed when whole)."""
    files = {kind: f"{kind}-{number:05d}.tfrecord" for kind in KINDS}
    partial = {kind: folder / f"partial.{name}" for kind, name in files.items()}
    writers = {kind: tf.io.TFRecordWriter(str(path)) for kind, path in partial.items()}
    index = first
    try:
        for images in _images(records, batch_size, image_size):
            outputs = dict(zip(KINDS, encode(images), strict=True))  # (n, C), (n, L, C)
            arrays = {kind: value.numpy().astype(np.float16) for kind, value in outputs.items()}
            for i in range(len(images)):
                for kind, writer in writers.items():
                    writer.write(_example(index + i, arrays[kind][i]))
            index += len(images)
    finally:
        for writer in writers.values():
            writer.close()
    for kind in KINDS:
        partial[kind].replace(folder / files[kind])
    return {"files": files, "shapes": {kind: list(arrays[kind].shape[1:]) for kind in KINDS}}


def _images(records, batch_size, image_size):
    """`image_dataset`'s batches; an image TensorFlow cannot read or decode stops it, named."""
    iterator = iter(image_dataset(records, batch_size=batch_size, image_size=image_size))
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise _undecodable(records, error) from None


def _undecodable(records, error):
    """An InputError naming the first of the records whose image TensorFlow cannot read or decode."""
    for record in records:
        if isinstance(record.image, np.ndarray):
            continue
        try:
            data = tf.io.read_file(str(record.image))
            tf.io.decode_image(data, channels=3, expand_animations=False)
        except tf.errors.OpError as failure:
            reason = failure.message.splitlines()[0][:200]
            return InputError(
                f"Image {record.image_id!r}, {record.image}: TensorFlow cannot read or decode it ({reason}). "
                "Convert it to JPEG or PNG, or leave it out of the records."
            )
    return error


def _example(index, features):
    """A serialised tf.train.Example: the record index and the features as a serialised float16 tensor."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
                "features": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(features).numpy()])
                ),
            }
        )
    ).SerializeToString()


def _weights_sha256(encoder):
    """sha256 of the encoder's weights (values, shapes, in order)."""
    digest = hashlib.sha256()
    for weight in encoder.weights:
        value = np.asarray(weight.numpy())
        digest.update(f"{value.shape}{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _check(path, found, expected, remedy):
    """InputError naming the first field of `expected` that `found` (read from `path`) disagrees on."""
    for field, value in expected.items():
        if found.get(field) != value:
            shown = {"fingerprint": "the image list's fingerprint", "records": "the number of images"}
            raise InputError(
                f"{path} was made for other settings: {shown.get(field, field)} is {_short(found.get(field))}, "
                f"asked: {_short(value)}. Its features are not read: {remedy}."
            )


def _short(value):
    text = json.dumps(value)
    return text[:16] + "..." if len(text) > 40 else text


def _check_kind(kind):
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}. Received: kind={kind!r}")


def _progress(progress, split, total, done_before):
    """A function images_done -> None that reports an extraction's progress (see `extract`)."""
    if callable(progress):
        return lambda done: progress(done, total)
    if not progress:
        return lambda done: None
    start = time.perf_counter()

    def report(done):
        rate = (done - done_before) / max(time.perf_counter() - start, 1e-9)
        end = "\n" if done == total else ""
        print(f"\rfeatures {split}: {done:,} / {total:,} images ({rate:,.0f}/s)", end=end, file=sys.stderr)

    return report


def _read_json(path):
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path, value):
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    partial = path.with_name("partial." + path.name)
    partial.write_text(json.dumps(value, indent=1) + "\n")
    partial.replace(path)
