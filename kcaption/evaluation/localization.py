"""Does attention look at the right object? A localisation score on shapes.

The shapes data knows every object's box, so when a captioner writes a colour
or shape word ("red", "circle") we know which object the word describes and
can check where the model attended at that step:

    hit = the attention peak's grid cell overlaps the box of that object
    score = hits / scored words

The attention maps are (L,) weights over the encoder's square grid of
L = g x g cells, in row-major order (as `ops.reshape` of an (N, g, g, C)
feature map gives), each cell covering S/g x S/g pixels of an S x S image.

Which object a word describes: the colour and the shape word next to it
narrow it down ("red circle": the red circle; "red" alone: the only red
object). A word whose object is not in the image (a wrong caption) or is
ambiguous is not scored, and counted as `skipped`.

Baseline: `chance` is the score of attention that is uniform over the grid
(its peak is then any cell, each equally likely): for each scored word, the
fraction of cells that overlap the object's box, averaged over the words.
"""

import dataclasses

import numpy as np

from kcaption.data.shapes import COLORS, SHAPES


@dataclasses.dataclass
class LocalizationScore:
    """The result of `localization_score`.

    Attributes:
        score: fraction of scored words whose attention peak hits the object's box
            (NaN when no word was scored).
        chance: the same for uniform attention (a random peak cell).
        hits: number of scored words whose peak hits.
        words: number of scored (colour or shape) words.
        skipped: colour/shape words not scored: their object is absent or ambiguous.
    """

    score: float
    chance: float
    hits: int
    words: int
    skipped: int

    def as_dict(self):
        """The fields as a JSON-ready dict (NaN, when no word was scored, becomes None)."""
        return {k: None if isinstance(v, float) and v != v else v for k, v in dataclasses.asdict(self).items()}


def described_object(words, index, objects):
    """The object that the colour or shape word `words[index]` describes, or None.

    Args:
        words: the caption's words, e.g. ["a", "small", "red", "circle", ...].
        index: position of the word to resolve.
        objects: the image's `ShapeObject`s.

    Returns:
        The `ShapeObject`, or None when the word is not a colour or shape word,
        or names no single object of the image.
    """
    word = words[index]
    if word in COLORS:
        candidates = [o for o in objects if o.color == word]
        after = words[index + 1] if index + 1 < len(words) else None
        if after in SHAPES:
            candidates = [o for o in candidates if o.shape == after]
    elif word in SHAPES:
        candidates = [o for o in objects if o.shape == word]
        before = words[index - 1] if index > 0 else None
        if before in COLORS:
            candidates = [o for o in candidates if o.color == before]
    else:
        return None
    return candidates[0] if len(candidates) == 1 else None


def word_boxes(words, objects):
    """The box of the object each colour or shape word describes: {word index: (x0, y0, x1, y1)}.

    Words that name no single object of the image (see `described_object`) have no entry.
    """
    boxes = {}
    for t in range(len(words)):
        target = described_object(words, t, objects)
        if target is not None:
            boxes[t] = target.box
    return boxes


def cell_boxes(num_cells, image_size):
    """The pixel box (x0, y0, x1, y1) of every cell of a square grid, row-major.

    Args:
        num_cells: L, a perfect square (g x g cells).
        image_size: S, the side of the image in pixels.

    Returns:
        A float array (L, 4).
    """
    side = int(round(num_cells**0.5))
    if side * side != num_cells:
        raise ValueError(
            f"Attention maps must cover a square grid (L = g * g cells). Received: num_cells={num_cells}"
        )
    cell = image_size / side
    rows, cols = np.divmod(np.arange(num_cells), side)
    return np.stack([cols * cell, rows * cell, (cols + 1) * cell, (rows + 1) * cell], axis=1)


def _overlaps(cells, box):
    """Which cells (L, 4) overlap `box` with a positive area, (L,) bool."""
    x0, y0, x1, y1 = box
    return (cells[:, 0] < x1) & (cells[:, 2] > x0) & (cells[:, 1] < y1) & (cells[:, 3] > y0)


def localization_score(captions, attention, objects, image_size):
    """Score where the attention looked when each colour/shape word was written.

    Args:
        captions: per image, the generated words (list of str), `<END>` and
            padding removed; word t was generated at decoding step t.
        attention: per image, an array (T', L) with T' >= len(words): row t
            the attention weights of decoding step t.
        objects: per image, its `ShapeObject`s.
        image_size: S, the side of the images in pixels.

    Returns:
        A `LocalizationScore`.
    """
    if not len(captions) == len(attention) == len(objects):
        raise ValueError(
            "captions, attention and objects must have one entry per image. "
            f"Received: {len(captions)} captions, {len(attention)} attention maps, {len(objects)} object lists"
        )
    hits = words = skipped = 0
    chance = 0.0
    for caption, weights, image_objects in zip(captions, attention, objects):
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[0] < len(caption):
            raise ValueError(
                f"Each attention map must be (T, L) with a row per word ({len(caption)} words). "
                f"Received: attention shape={weights.shape}"
            )
        cells = cell_boxes(weights.shape[1], image_size)
        for t, word in enumerate(caption):
            if word not in COLORS and word not in SHAPES:
                continue
            target = described_object(caption, t, image_objects)
            if target is None:
                skipped += 1
                continue
            inside = _overlaps(cells, target.box)
            words += 1
            hits += bool(inside[int(np.argmax(weights[t]))])
            chance += float(inside.mean())
    return LocalizationScore(
        score=hits / words if words else float("nan"),
        chance=chance / words if words else float("nan"),
        hits=hits,
        words=words,
        skipped=skipped,
    )


def attention_example(record, words, attention, path=None, note=""):
    """Draw where a captioner looked for each word of its caption of `record`, with the verdict.

    The title says, in green or red, whether the caption names exactly the
    image's coloured shapes ("✓ right: ...") or not ("✗ wrong: ... (the image
    has ...)"), as `kcaption.viz.objects_right` decides (colour and kind;
    sizes and places are not checked). Each colour/shape word's panel shows
    the box of the object it describes.

    Args:
        record: a shapes `CaptionRecord`.
        words: the generated words (without `<END>`).
        attention: (T, L) attention weights, T >= len(words).
        path: where to save the PNG (None: do not save).
        note: appended to the title, e.g. a localisation score.

    Returns:
        The matplotlib figure.
    """
    from kcaption.viz import objects_right
    from kcaption.viz.attention import attention_overlay
    from kcaption.viz.captions import RIGHT_COLOR, WRONG_COLOR

    caption = " ".join(words)
    right = objects_right([record], [caption])[0]
    if right:
        title = f"✓ right: {caption}"
    else:
        has = " and ".join(("an " if o.phrase[0] in "aeiou" else "a ") + o.phrase for o in record.objects)
        title = f"✗ wrong: {caption}  (the image has {has})"
    return attention_overlay(record.load_image(), words, attention, path=path, boxes=word_boxes(words, record.objects),
                             title=title + note, title_color=RIGHT_COLOR if right else WRONG_COLOR)


def attention_report(model, records, vocab, path=None, image_size=64, max_length=16, batch_size=100):
    """Caption `records` with an attention captioner, score its attention, draw one example.

    Args:
        model: a trained "attn" or "transformer" captioner.
        records: shapes `CaptionRecord`s (they must know their objects).
        vocab: the model's `Vocabulary`.
        path: where to save the attention overlay of the first record whose
            caption is right (of the first record if none is; None: no picture).
        image_size: S, the side of the images.
        max_length: number of words generated.
        batch_size: images per sampling batch.

    Returns:
        `LocalizationScore.as_dict()`, what the demo writes into its metrics JSON.
    """
    from kcaption.data import image_dataset
    from kcaption.viz import objects_right
    from kcaption.viz.attention import sample_with_attention

    if any(r.objects is None for r in records):
        raise ValueError("attention_report needs records that know their objects (shapes data). Received: objects=None")
    words, attention = [], []
    for images in image_dataset(records, batch_size=batch_size, image_size=image_size):
        ids, weights = sample_with_attention(model, images, max_length=max_length)
        words += [vocab.decode(row).split() for row in ids]
        attention += list(weights)
    result = localization_score(words, attention, [r.objects for r in records], image_size)
    if path is not None:
        right = objects_right(records, [" ".join(w) for w in words])
        k = right.index(True) if True in right else 0
        note = f"\n(all {len(records)} images: localisation {result.score:.0%} vs chance {result.chance:.0%})"
        attention_example(records[k], words[k], attention[k], path=path, note=note)
    return result.as_dict()
