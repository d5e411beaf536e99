"""A grid of images with their generated and reference captions, marked right or wrong."""

import textwrap

import numpy as np

RIGHT_COLOR, WRONG_COLOR, REFERENCE_COLOR = "#1a7f37", "#cf222e", "#57606a"
IMAGE_SIDE, COLUMN_WIDTH, WRAP = 2.6, 3.1, 40  # inches, inches, characters per line
FONT_SIZE, LINE_HEIGHT, SPACING = 8, 8 * 1.25, 3  # points: a line (spacing 1.2, and room for descenders), between texts


def objects_right(records, captions):
    """Whether each caption names exactly its image's coloured shapes.

    The per-image verdict behind the "objects right" score of
    `kcaption.evaluation.metrics.object_scores`, for `caption_grid(correct=...)`: each
    (colour, shape) pair of the image named once, no other; sizes and places
    are not checked.

    Args:
        records: `CaptionRecord`s; shapes records know their objects.
        captions: one caption (str) per record.

    Returns:
        One entry per record: True, False, or None for a record that does not
        know its objects (COCO).
    """
    from kcaption.evaluation.metrics import object_scores

    if len(records) != len(captions):
        raise ValueError(
            f"objects_right needs one caption per record. Received: {len(records)} records, {len(captions)} captions."
        )
    return [
        None if r.objects is None else object_scores([r.objects], [caption])["objects_exact"] == 1.0
        for r, caption in zip(records, captions)
    ]


def caption_grid(images, generated, references=None, path=None, columns=4, title=None, correct=None):
    """Show images, each with the model's caption (or several models' captions) and one reference below it.

    Each row of images gets the height its longest text needs, so captions
    never run into the next row.

    Args:
        images: (N, S, S, 3) floats in [0, 1] or uint8.
        generated: N caption strings; or a dict {model name: N caption strings}
            to compare models on the same images (one line per model).
        references: N reference strings or lists of strings (the first is shown), or None.
        path: where to save the PNG (None: do not save).
        columns: images per row.
        title: the figure title.
        correct: None, or one entry per image: True (the caption is right),
            False (wrong) or None (unknown), e.g. from `objects_right`. A known
            verdict frames the image and colours its caption (green, red) after a
            "✓ right" / "✗ wrong" label. With a dict of captions: a dict of
            verdicts with the same names; each line is coloured, no frame.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    models = generated if isinstance(generated, dict) else {None: generated}
    verdicts = correct if isinstance(correct, dict) else {None: correct}
    for name, captions in models.items():
        if len(captions) != n:
            raise ValueError(f"caption_grid needs one caption per image. Received: {n} images, {len(captions)} "
                             f"captions{f' of {name}' if name else ''}.")
        if verdicts.get(name) is not None and len(verdicts[name]) != n:
            raise ValueError(f"caption_grid needs one verdict per image. Received: {n} images, "
                             f"{len(verdicts[name])} verdicts{f' of {name}' if name else ''}.")
    texts = []  # per image: [(text, colour, bold)], drawn top to bottom under it
    for k in range(n):
        parts = []
        for name, captions in models.items():
            verdict = None if verdicts.get(name) is None else verdicts[name][k]
            label, color = {True: ("✓", RIGHT_COLOR), False: ("✗", WRONG_COLOR)}.get(verdict, ("", "black"))
            if name is None:
                label = {"✓": "✓ right", "✗": "✗ wrong", "": "gen"}[label] + ":"
            else:
                label = f"{label} {name}:".strip()
            parts.append((textwrap.fill(f"{label} {captions[k]}", WRAP), color, True))
        if references is not None:
            ref = references[k] if isinstance(references[k], str) else references[k][0]
            parts.append((textwrap.fill(f"ref: {ref}", WRAP), REFERENCE_COLOR, False))
        texts.append(parts)

    rows = max(1, -(-n // columns))
    gap, margin = 0.15, 0.1  # inches: under each image, around the figure
    heights = [sum((t.count("\n") + 1) * LINE_HEIGHT + SPACING for t, _, _ in parts) / 72 for parts in texts]
    text_height = [max(heights[r * columns:(r + 1) * columns]) + gap for r in range(rows)]
    top = 0.45 if title else margin
    width = columns * COLUMN_WIDTH + 2 * margin
    height = top + rows * (IMAGE_SIDE + gap) + sum(text_height) + margin
    fig = plt.figure(figsize=(width, height))
    y = height - top
    for r in range(rows):
        y -= IMAGE_SIDE
        for c in range(columns):
            k = r * columns + c
            if k >= n:
                break
            x = margin + c * COLUMN_WIDTH
            ax = fig.add_axes([x / width, y / height, IMAGE_SIDE / width, IMAGE_SIDE / height])
            ax.imshow(images[k])
            ax.set_xticks([])
            ax.set_yticks([])
            verdict = None if correct is None or isinstance(correct, dict) else correct[k]
            for spine in ax.spines.values():
                spine.set_visible(verdict is not None)
                spine.set_color(RIGHT_COLOR if verdict else WRONG_COLOR)
                spine.set_linewidth(3)
            offset = -gap * 72  # points below the image
            for text, color, bold in texts[k]:
                ax.annotate(text, (0, 0), xycoords="axes fraction", xytext=(0, offset), textcoords="offset points",
                            va="top", ha="left", fontsize=FONT_SIZE, color=color, weight="bold" if bold else "normal")
                offset -= (text.count("\n") + 1) * LINE_HEIGHT + SPACING
        y -= text_height[r] + gap
    if title:
        fig.suptitle(title, y=1 - 0.1 / height, va="top")
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
