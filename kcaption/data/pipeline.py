"""The tf.data pipeline: records -> batches for teacher forcing.

    make_dataset(records, vocab) yields ((images, captions_in), captions_out):
        images        float32 (N, S, S, 3) in [0, 1]
        captions_in   int32   (N, L - 1)   ids y[0 : L-1]  (<START> w1 ... wT <END> <NULL>..., minus the last)
        captions_out  int32   (N, L - 1)   ids y[1 : L]    (the same ids shifted left by one)
    so the model reads captions_in[:, t] and must predict captions_out[:, t]
    (L = max_length, 17 by default).

Stages, in order: (shuffle the records), read and resize each image (JPEG/PNG
files are decoded, in-memory arrays go straight in), cache, (shuffle the
cached images), pair each image with its caption(s), (shuffle the pairs),
batch, normalise and split input/target (once per batch), prefetch. Images
stay uint8 until then, so a cache and a shuffle buffer hold 4x less memory.
Any backbone-specific preprocessing is the image encoder's job.

A file cache may make TensorFlow log "The calling iterator did not fully read
the dataset being cached" after a complete first epoch: a known false alarm
(tensorflow/tensorflow#60174); the cache is complete.
"""

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from kcaption.data.vocab import NULL

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_IMAGES = 4096  # shuffle buffer after a cache, in decoded images
CAPTION_MODES = ("all", "first", "random", "grouped")
GROUP_SIZE = 5  # captions per image in a "grouped" example (COCO and shapes have 5 or more)
_log = logging.getLogger("kcaption.data")


@dataclasses.dataclass
class EncodeReport:
    """What encoding the captions did: how many were kept, skipped, and unknown words."""

    captions: int = 0
    too_long: int = 0
    unknown_words: int = 0
    unknown_examples: list = dataclasses.field(default_factory=list)
    images_without_captions: int = 0

    def __str__(self):
        parts = [f"encoded {self.captions} captions"]
        if self.too_long:
            parts.append(f"skipped {self.too_long} too long")
        if self.images_without_captions:
            parts.append(f"dropped {self.images_without_captions} images left with no caption")
        if self.unknown_words:
            parts.append(
                f"{self.unknown_words} unknown words -> <UNK> (e.g. {', '.join(self.unknown_examples)})"
            )
        return ", ".join(parts)


def encode_captions(records, vocab, *, max_length=17, too_long="error"):
    """Encode every caption of every record.

    Args:
        records: a list of `CaptionRecord`.
        vocab: a `Vocabulary`; unknown words become <UNK> and are counted.
        max_length: ids per caption, <START> and <END> included.
        too_long: a caption with more than max_length - 2 tokens either raises
            ("error", naming the image and caption) or is skipped and counted
            ("skip"); an image left with no caption is then dropped (counted).

    Returns:
        (kept, tokens, counts, report): the indices of the records kept,
        int32 tokens (len(kept), C, max_length) padded with <NULL> rows, the
        number of real captions per kept image, and an `EncodeReport`.
    """
    if too_long not in ("error", "skip"):
        raise ValueError(f'too_long must be "error" or "skip". Received: too_long={too_long!r}')
    report = EncodeReport()
    kept, encoded = [], []
    for index, record in enumerate(records):
        rows = []
        for caption in record.captions:
            try:
                rows.append(vocab.encode(caption, max_length=max_length))
            except ValueError as error:
                if too_long == "error":
                    raise ValueError(f"Image {record.image_id!r}: {error}") from None
                report.too_long += 1
                continue
            unknown = vocab.unknown_words(caption)
            report.unknown_words += len(unknown)
            report.unknown_examples += [w for w in unknown if w not in report.unknown_examples][
                : 5 - len(report.unknown_examples)
            ]
        if rows:
            kept.append(index)
            encoded.append(rows)
        else:
            report.images_without_captions += 1
    report.captions = sum(len(rows) for rows in encoded)
    if not encoded:
        raise ValueError(f"No image has a usable caption ({report}).")
    width = max(len(rows) for rows in encoded)
    tokens = np.full((len(encoded), width, max_length), NULL, dtype=np.int32)
    for i, rows in enumerate(encoded):
        tokens[i, : len(rows)] = rows
    counts = np.array([len(rows) for rows in encoded], dtype=np.int32)
    return np.array(kept, dtype=np.int64), tokens, counts, report


def make_dataset(
    records,
    vocab,
    *,
    batch_size=64,
    image_size=64,
    max_length=17,
    captions="all",
    shuffle=False,
    seed=None,
    cache=None,
    drop_remainder=False,
    too_long="error",
):
    """A `tf.data.Dataset` of ((images, captions_in), captions_out) batches.

    Args:
        records: a list of `CaptionRecord` (all with file paths, or all with
            uint8 arrays).
        vocab: a `Vocabulary`.
        batch_size: examples per batch.
        image_size: S; images are resized to (S, S) when they differ.
        max_length: ids per caption, <START> and <END> included; the model sees
            max_length - 1 of them.
        captions: "all" (each (image, caption) pair is one example, ~5 per
            image), "first" (one example per image, its first caption),
            "random" (one per image, a caption drawn anew each epoch) or
            "grouped" (one example per image with GROUP_SIZE of its captions,
            drawn anew each epoch, repeating some when it has fewer: captions
            (N, GROUP_SIZE, max_length - 1), for a captioner that encodes each
            image once for all of them, see `Captioner`).
        shuffle: reshuffle every epoch: without a cache, the records (all of
            them, before decoding); with a cache, the decoded images (buffer:
            at most SHUFFLE_IMAGES); with "all", also the pairs of nearby images.
        seed: the shuffle / "random" seed (None: different every run).
        cache: None, "memory", or a file prefix: decoded, resized images are
            kept after the first epoch. A file cache's name gets a fingerprint
            of the records and settings, so a cache of other data is never
            read by mistake.
        drop_remainder: drop the last, smaller batch (static batch size).
        too_long: "error" or "skip" a caption longer than max_length - 2
            tokens (see `encode_captions`). The encoding report (skips,
            unknown words) is logged on the "kcaption.data" logger.

    Returns:
        The dataset; its element_spec is
        ((float32 (None, S, S, 3), int32 (None, max_length - 1)), int32 (None, max_length - 1)),
        with (None, GROUP_SIZE, max_length - 1) captions when grouped.
    """
    _check_arguments("make_dataset", records, captions, batch_size=batch_size, image_size=image_size,
                     max_length=max_length)
    kept, tokens, counts = _encode("make_dataset", records, vocab, max_length, too_long)
    records = [records[i] for i in kept]
    load_image = _image_loader(records, image_size)

    def normalise(images):
        """A batch of uint8 images -> float32 [0, 1]."""
        return tf.cast(images, tf.float32) / 255.0

    return (
        tf.data.Dataset.from_tensor_slices((tf.range(len(records)), tokens, counts))
        .apply(_shuffle(shuffle and cache is None, len(records), seed))
        .map(lambda i, t, n: (load_image(i), t, n), num_parallel_calls=AUTOTUNE)
        .apply(_cache(cache, records, tokens, image_size))
        .apply(_shuffle(shuffle and cache is not None, min(len(records), SHUFFLE_IMAGES), seed))
        .apply(_caption_batches(captions, counts, batch_size, drop_remainder, shuffle, seed, normalise))
    )


def _check_arguments(caller, records, captions, **sizes):
    """ValueError unless there are records, `captions` is a mode and every size is an int in range."""
    if not records:
        raise ValueError(f"{caller} needs at least one record. Received: records=[]")
    if captions not in CAPTION_MODES:
        raise ValueError(
            f"captions must be one of {CAPTION_MODES}. Received: captions={captions!r}"
        )
    for name, value in sizes.items():
        low = 3 if name == "max_length" else 1
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")


def _encode(caller, records, vocab, max_length, too_long):
    """`encode_captions`, its report logged on the "kcaption.data" logger: (kept, tokens, counts)."""
    kept, tokens, counts, report = encode_captions(
        records, vocab, max_length=max_length, too_long=too_long
    )
    log = _log.warning if report.too_long or report.unknown_words else _log.info
    log("%s: %s", caller, report)
    return kept, tokens, counts


def _caption_batches(captions, counts, batch_size, drop_remainder, shuffle, seed, prepare):
    """Dataset transformation: (x, tokens (C, L), count) per image -> ((prepare(x batch), captions_in),
    captions_out) batches, prefetched; the stages after the images are read, shared with
    `kcaption.data.features.feature_dataset`.

    Pairs each x with its caption(s) (`captions` mode), shuffles the pairs of nearby images with
    "all", batches, prepares x and splits input/target (once per batch).
    """
    pair = {
        "all": _all_captions(int(counts.sum())),
        "first": _first_caption,
        "random": _random_caption(seed),
        "grouped": _grouped_captions(seed),
    }

    def split(x, tokens):
        """A batch: x -> prepare(x); tokens (N, [G,] L) -> (captions_in, captions_out)."""
        return (prepare(x), tokens[..., :-1]), tokens[..., 1:]

    return lambda ds: (
        ds.apply(pair[captions])
        .apply(_shuffle(shuffle and captions == "all", 8 * batch_size, seed))
        .batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        .map(split, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def image_dataset(records, *, batch_size=64, image_size=64):
    """The records' images alone, float32 (N, S, S, 3) in [0, 1], in record order.

    For captioning and evaluation: batch k holds records[k*batch_size : (k+1)*batch_size].
    """
    if not records:
        raise ValueError("image_dataset needs at least one record. Received: records=[]")
    load_image = _image_loader(records, image_size)
    return (
        tf.data.Dataset.range(len(records))
        .map(lambda i: tf.cast(load_image(i), tf.float32) / 255.0, num_parallel_calls=AUTOTUNE)
        .batch(batch_size, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def _image_loader(records, image_size):
    """A function: record index -> uint8 image (S, S, 3), from files or from arrays."""
    if not records:
        raise ValueError("The pipeline needs at least one record. Received: records=[]")
    arrays = [isinstance(r.image, np.ndarray) for r in records]
    if all(arrays):
        for record in records:
            image = record.image
            if (
                image.dtype != np.uint8
                or image.ndim != 3
                or image.shape[2] != 3
                or image.shape != records[0].image.shape
            ):
                raise ValueError(
                    f"Record {record.image_id!r}: in-memory images must all be uint8 (H, W, 3) of one shape "
                    f"{records[0].image.shape}. Received: dtype={image.dtype}, shape={image.shape}"
                )
        images = tf.constant(np.stack([r.image for r in records]))

        def from_array(index):
            return _resize(tf.gather(images, index), image_size)

        return from_array
    if any(arrays):
        raise ValueError("Records mix in-memory images and file paths; use one kind per dataset.")
    paths = tf.constant([str(r.image) for r in records])

    def from_file(index):
        data = tf.io.read_file(tf.gather(paths, index))
        image = tf.io.decode_image(data, channels=3, expand_animations=False)  # JPEG, PNG, ...
        return _resize(image, image_size)

    return from_file


def _resize(image, image_size):
    """uint8 (H, W, 3) -> uint8 (S, S, 3); untouched when already that size."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    image = tf.cond(
        same,
        lambda: image,
        lambda: tf.cast(
            tf.round(
                tf.clip_by_value(
                    tf.image.resize(image, (image_size, image_size), antialias=True), 0, 255
                )
            ),
            tf.uint8,
        ),
    )
    return tf.ensure_shape(image, (image_size, image_size, 3))


def _cache(cache, records, tokens, image_size):
    """Dataset transformation: cache in memory, to a fingerprinted file, or not at all."""
    if cache is None:
        return lambda ds: ds
    if cache == "memory":
        return lambda ds: ds.cache()
    digest = hashlib.sha1()
    for record in records:
        digest.update(
            f"{record.image_id}\0{record.image if isinstance(record.image, str | Path) else ''}\0".encode()
        )
    digest.update(f"{image_size}".encode())
    digest.update(tokens.tobytes())
    prefix = Path(f"{cache}-{digest.hexdigest()[:12]}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return lambda ds: ds.cache(str(prefix))


def _shuffle(enabled, buffer_size, seed):
    """Dataset transformation: shuffle (reshuffled every epoch), or nothing."""
    if not enabled:
        return lambda ds: ds
    return lambda ds: ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)


def _all_captions(total):
    """(image, tokens (C, L), count) -> one (image, caption) element per real caption, `total` in all.

    `unbatch` leaves the number of elements unknown to tf.data; stating it lets
    Keras count an epoch's batches up front (and not take the end of the first
    epoch for running out of data).
    """

    def repeat(image, tokens, count):
        return tf.repeat(image[None], count, axis=0), tokens[:count]  # (count, S, S, 3), (count, L)

    return lambda ds: (
        ds.map(repeat, num_parallel_calls=AUTOTUNE).unbatch().apply(tf.data.experimental.assert_cardinality(total))
    )


def _first_caption(ds):
    """(image, tokens (C, L), count) -> (image, first caption)."""
    return ds.map(lambda image, tokens, count: (image, tokens[0]), num_parallel_calls=AUTOTUNE)


def _grouped_captions(seed):
    """(image, tokens (C, L), count) -> (image, GROUP_SIZE of its captions (GROUP_SIZE, L)).

    The captions are a random order of the image's `count`, drawn anew each
    epoch, cycled when count < GROUP_SIZE.
    """

    def pick(ds):
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def group(element, draw):
            image, tokens, count = element
            order = tf.argsort(tf.random.stateless_uniform([count], seed=tf.stack([draw, draw // 2])))
            return image, tf.gather(tokens, tf.gather(order, tf.range(GROUP_SIZE) % count))

        return tf.data.Dataset.zip(ds, draws).map(group, num_parallel_calls=AUTOTUNE)

    return pick


def _random_caption(seed):
    """(image, tokens (C, L), count) -> (image, one caption drawn anew each epoch)."""

    def pick(ds):
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(ds, draws).map(
            lambda element, draw: (
                element[0],
                element[1][tf.cast(draw % tf.cast(element[2], tf.int64), tf.int32)],
            ),
            num_parallel_calls=AUTOTUNE,
        )

    return pick
