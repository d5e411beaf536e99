"""shapes: a procedural captioning dataset that needs no download.

Each image is a light, slightly noisy background with 1-3 non-overlapping
coloured shapes; each caption names them and how they are placed:

    "a small red circle to the left of a large blue square"
    "a red circle to the left of a blue square"

Captions are determined by the image (up to the choice of paraphrase), so a
captioner can learn them in minutes on a CPU, and a model that ignores the
image cannot: there are no filler phrases ("a picture of") that a blind model
could score with. Every record keeps its objects' attributes and boxes, so later
lessons can check where attention looks when a word is generated.

How captions are made, for objects A, B, C ordered left to right:
- the relation of A to B is "to the left of" when their centres are further
  apart horizontally than vertically, else "above" or "below";
- 1 object: "a {A}", "there is a {A}", "one {A}", and "a {colour shape of A}",
  "one {colour shape of A}";
- 2 objects: "a {A} {rel} a {B}", "a {B} {inverse rel} a {A}",
  "a {A} {rel} a {B}" and "the {A} is {rel} the {B}" (both without sizes),
  "a {A} and a {B}";
- 3 objects: "a {A} a {B} and a {C}" and "three shapes a {A} a {B} and a {C}"
  (each with and without sizes), "a {A} {rel} a {B} and a {C}" (no sizes).
("a" becomes "an" before "orange".) Every caption has at most 15 words and
the vocabulary has 27 words.
"""

import numpy as np

from kcaption.data.records import CaptionRecord, ShapeObject
from kcaption.data.tokenize import tokenize

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.95, 0.55, 0.05),
    "yellow": (0.90, 0.82, 0.08),
    "green": (0.10, 0.62, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "purple": (0.55, 0.15, 0.70),
}
SIZES = {"small": (0.16, 0.22), "large": (0.30, 0.38)}  # side, as a fraction of the image
SPLITS = {"train": (1, 2000), "val": (2, 200), "test": (3, 200)}  # seed, default size

_GAP = 2  # pixels between any two objects, and from the border
_COLOR_JITTER = 0.06
_NOISE = 0.025


def make_shapes(n, seed=0, image_size=64, min_objects=1, max_objects=3, captions_per_image=5):
    """Generate `n` shapes records.

    Record i depends only on (seed, i), so `make_shapes(10, s)[:5]` equals
    `make_shapes(5, s)`.

    Args:
        n: number of images.
        seed: the random seed.
        image_size: S, the images are (S, S, 3) uint8. At least 32.
        min_objects, max_objects: each image has a uniform number of objects
            in this range, 1 <= min_objects <= max_objects <= 3.
        captions_per_image: how many paraphrases per image (5 distinct ones;
            more repeat them).

    Returns:
        A list of `CaptionRecord` with `image` arrays and `objects`.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0. Received: n={n!r}")
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32. Received: image_size={image_size!r}")
    if not 1 <= min_objects <= max_objects <= 3:
        raise ValueError(
            "Need 1 <= min_objects <= max_objects <= 3. "
            f"Received: min_objects={min_objects}, max_objects={max_objects}"
        )
    if not isinstance(captions_per_image, int) or captions_per_image < 1:
        raise ValueError(
            f"captions_per_image must be a positive int. Received: captions_per_image={captions_per_image!r}"
        )
    grid = np.mgrid[0:image_size, 0:image_size] + 0.5  # (2, S, S) pixel centres: y, x
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        count = int(rng.integers(min_objects, max_objects + 1))
        objects = _place_objects(rng, count, image_size)
        image = _draw(rng, objects, grid)
        captions = _captions(objects)
        order = rng.permutation(len(captions))
        chosen = [captions[order[k % len(captions)]] for k in range(captions_per_image)]
        records.append(CaptionRecord(f"s{seed}-{i:05d}", image, chosen, objects))
    return records


def load_shapes(split="train", n=None, image_size=64, **kwargs):
    """A fixed split of shapes: "train" (2000 images), "val" (200) or "test" (200).

    The splits use different seeds, so they hold different images.

    Args:
        split: "train", "val" or "test".
        n: number of images (default: the split's size above).
        image_size: S, images are (S, S, 3).
        **kwargs: passed to `make_shapes` (min_objects, max_objects,
            captions_per_image).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}. Received: split={split!r}")
    seed, size = SPLITS[split]
    return make_shapes(size if n is None else n, seed=seed, image_size=image_size, **kwargs)


def _place_objects(rng, count, image_size):
    """Non-overlapping objects with distinct (colour, shape), ordered left to right."""
    while True:
        kinds = set()
        while len(kinds) < count:
            kinds.add((str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))))
        sizes = [str(rng.choice(list(SIZES))) for _ in kinds]
        boxes = _random_boxes(rng, sizes, image_size, tries=64)  # (tries, count, 4)
        for candidate in boxes.tolist():
            if _well_separated(candidate, image_size):
                return sorted(
                    (
                        ShapeObject(s, c, z, tuple(b))
                        for (c, s), z, b in zip(sorted(kinds), sizes, candidate)
                    ),
                    key=lambda o: o.center[0],
                )


def _random_boxes(rng, sizes, image_size, tries):
    """`tries` candidate placements of squares of the given sizes, inside the image."""
    low, high = np.array([SIZES[size] for size in sizes]).T  # (count,) each
    sides = np.round(rng.uniform(low, high, size=(tries, len(sizes))) * image_size).astype(int)
    room = image_size - 2 * _GAP - sides + 1  # positions that keep the border gap
    x0 = _GAP + np.floor(rng.random(sides.shape) * room).astype(int)
    y0 = _GAP + np.floor(rng.random(sides.shape) * room).astype(int)
    return np.stack([x0, y0, x0 + sides, y0 + sides], axis=-1)


def _well_separated(boxes, image_size):
    """No two boxes closer than _GAP, and each pair clearly ordered left-right and by relation."""
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart_x = a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0]
            apart_y = a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1]
            if not (apart_x or apart_y):
                return False
            dx = abs((a[0] + a[2]) - (b[0] + b[2])) / 2
            dy = abs((a[1] + a[3]) - (b[1] + b[3])) / 2
            if dx < image_size / 8 or max(dx, dy) < 1.25 * min(dx, dy):
                return False
    return True


def _mask(obj, grid):
    y, x = grid
    x0, y0, x1, y1 = obj.box
    cx, cy = obj.center
    half = (x1 - x0) / 2
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    if obj.shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= half**2
    if obj.shape == "triangle":  # apex up
        return inside & (np.abs(x - cx) <= (y - y0) / 2)
    if obj.shape == "diamond":
        return np.abs(x - cx) + np.abs(y - cy) <= half
    return inside  # square


def _draw(rng, objects, grid):
    size = grid.shape[1]
    background = rng.uniform(0.82, 0.96) + rng.uniform(-0.03, 0.03, size=3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    for obj in objects:
        color = np.asarray(COLORS[obj.color]) + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=3)
        image[_mask(obj, grid)] = color
    image += rng.normal(0.0, _NOISE, size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _relation(a, b):
    """Where `a` is relative to `b`: "to the left of", "to the right of", "above" or "below"."""
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def _captions(objects):
    """The five paraphrases for objects ordered left to right."""
    full = [_article(o.phrase) for o in objects]  # "a small red circle"
    short = [_article(f"{o.color} {o.shape}") for o in objects]  # "an orange circle"
    if len(objects) == 1:
        (a,), (qa,) = full, short
        return [a, f"there is {a}", f"one {objects[0].phrase}", qa, f"one {qa[qa.index(' ') + 1:]}"]
    rel = _relation(objects[0], objects[1])
    if len(objects) == 2:
        (a, b), (qa, qb) = full, short
        the_a, the_b = (f"the {o.color} {o.shape}" for o in objects)
        return [
            f"{a} {rel} {b}",
            f"{b} {_relation(*objects[::-1])} {a}",
            f"{qa} {rel} {qb}",
            f"{the_a} is {rel} {the_b}",
            f"{a} and {b}",
        ]
    (a, b, c), (qa, qb, qc) = full, short
    return [
        f"{a} {b} and {c}",
        f"{qa} {qb} and {qc}",
        f"three shapes {qa} {qb} and {qc}",
        f"three shapes {a} {b} and {c}",
        f"{qa} {rel} {qb} and {qc}",
    ]


def caption_objects(caption):
    """The (colour, shape) pairs a caption names, in order: the inverse of the caption grammar.

    A shape word counts when a colour word comes right before it, as in every
    shapes caption ("a small red circle", "the red circle"). A pair named twice
    is listed twice.

    Example:
        >>> caption_objects("a small red circle to the left of a blue square")
        [('red', 'circle'), ('blue', 'square')]
    """
    words = tokenize(caption)
    return [(before, word) for before, word in zip(words, words[1:]) if before in COLORS and word in SHAPES]


def _article(phrase):
    """ "a small red circle", "an orange square"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase
