"""The record every dataset is read into: one image, its captions, its objects.

Also what every reader checks about them: whether an image file is of a
format the pipeline's decoder reads (`image_format`), and which captions are
too long to encode (`drop_long_captions`).
"""

import dataclasses

import numpy as np

from kcaption.data.tokenize import tokenize

# What the pipeline's tf.io.decode_image reads, in Pillow's names. It tells
# them apart by their first bytes, as `image_format` does.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP"}


@dataclasses.dataclass
class ShapeObject:
    """One object drawn in a shapes image.

    Attributes:
        shape: e.g. "circle".
        color: e.g. "red".
        size: "small" or "large".
        box: (x0, y0, x1, y1) in pixels, x1 and y1 exclusive (as in a numpy
            slice `image[y0:y1, x0:x1]`).
    """

    shape: str
    color: str
    size: str
    box: tuple

    @property
    def center(self):
        """(x, y) of the box centre, in pixels."""
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    @property
    def phrase(self):
        """How captions name it: "small red circle"."""
        return f"{self.size} {self.color} {self.shape}"


@dataclasses.dataclass
class CaptionRecord:
    """One image and its captions.

    Attributes:
        image_id: a unique id within its dataset (str).
        image: a file path (JPEG or PNG), or a uint8 array of shape (S, S, 3).
        captions: the reference captions (usually 5).
        objects: the objects in the image with their boxes (shapes data), or
            None when unknown (COCO).
    """

    image_id: str
    image: object
    captions: list
    objects: list = None

    def load_image(self):
        """The image as a uint8 array (H, W, 3), read from disk if it is a path."""
        if isinstance(self.image, np.ndarray):
            return self.image
        from PIL import Image

        with Image.open(self.image) as image:
            return np.asarray(image.convert("RGB"))


def image_format(path):
    """The format of an image file, from its first bytes, as TensorFlow's decoder tells it.

    `tf.io.decode_image` (what the pipeline decodes with) reads a file by its
    first bytes, whatever its name: a TIFF named `.jpg` fails, mid-training.
    This reads the same bytes (and, for other formats, only the header
    Pillow needs to name them), not the pixels: checking a file is cheap.

    Args:
        path: an image file.

    Returns:
        One of `IMAGE_FORMATS` when tf.io.decode_image reads files of its
        kind; otherwise what the file is, e.g. "TIFF" (Pillow's name),
        "BMP (1-bit)" (a BMP TensorFlow cannot decode), or None when neither
        TensorFlow nor Pillow recognise it (not an image).

    Raises:
        OSError: the file cannot be read (FileNotFoundError when missing).
    """
    with open(path, "rb") as file:
        header = file.read(34)
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "WEBP"
    for magic, kind in _SIGNATURES.items():
        if header.startswith(magic):
            return _bmp_format(header) if kind == "BMP" else kind
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format
    except (UnidentifiedImageError, SyntaxError, ValueError):
        return None


def _bmp_format(header):
    """ "BMP" when TensorFlow's BMP decoder reads it: 8, 24 or 32 bits per pixel, not compressed."""
    if len(header) < 34:
        return "BMP (truncated)"
    bits = int.from_bytes(header[28:30], "little")
    compression = int.from_bytes(header[30:34], "little")
    if bits not in (8, 24, 32):
        return f"BMP ({bits}-bit)"
    if compression not in (0, 3):  # none, or bit fields (32-bit)
        return "BMP (compressed)"
    return "BMP"


@dataclasses.dataclass
class LengthReport:
    """What `drop_long_captions` kept and dropped. `print(report)` for a summary."""

    max_length: int
    captions: int = 0
    too_long: int = 0
    too_long_examples: list = dataclasses.field(default_factory=list)
    images_without_captions: list = dataclasses.field(default_factory=list)

    def __str__(self):
        text = f"kept {self.captions} captions of at most {self.max_length - 2} tokens"
        if self.too_long:
            text += f"; dropped {self.too_long} longer (e.g. {'; '.join(self.too_long_examples)})"
        if self.images_without_captions:
            ids = self.images_without_captions
            text += (
                f"; dropped {len(ids)} images left with no caption "
                f"(ids: {', '.join(ids[:3])}{', ...' * (len(ids) > 3)})"
            )
        return text


def drop_long_captions(records, max_length=17):
    """Drop the captions too long to encode, before a vocabulary is built from them.

    A caption is too long when `Vocabulary.encode(caption, max_length)` would
    refuse it: more than max_length - 2 tokens (as `tokenize` counts them).
    Building the vocabulary from the kept captions only means a skipped
    caption adds no word to it.

    Args:
        records: a list of `CaptionRecord`.
        max_length: ids per encoded caption, <START> and <END> included.

    Returns:
        (records, report): the records in the same order, each with only the
        captions that fit (a copy where some were dropped; the input is not
        changed; an image left with none is dropped), and a `LengthReport`.

    Example:
        >>> records, report = drop_long_captions(records, max_length=17)
        >>> vocab = Vocabulary.build(c for r in records for c in r.captions)
    """
    if not isinstance(max_length, int) or max_length < 3:
        raise ValueError(f"max_length must be an int >= 3. Received: max_length={max_length!r}")
    report = LengthReport(max_length)
    kept_records = []
    for record in records:
        kept = []
        for caption in record.captions:
            tokens = len(tokenize(caption))
            if tokens <= max_length - 2:
                kept.append(caption)
                continue
            report.too_long += 1
            if len(report.too_long_examples) < 3:
                report.too_long_examples.append(f"{preview(caption)} ({tokens} tokens)")
        if not kept:
            report.images_without_captions.append(record.image_id)
        elif len(kept) == len(record.captions):
            kept_records.append(record)
        else:
            kept_records.append(dataclasses.replace(record, captions=kept))
    report.captions = sum(len(r.captions) for r in kept_records)
    return kept_records, report


def preview(text, limit=60):
    """`text` for a message: its repr, cut after `limit` characters ("...")."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
