"""The record every dataset is read into: one image, its captions, its objects."""

import dataclasses

import numpy as np


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
