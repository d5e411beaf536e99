"""A grid of images with their generated and reference captions."""

import textwrap

import numpy as np


def caption_grid(images, generated, references=None, path=None, columns=4, title=None):
    """Show images with the model's caption (bold) and one reference caption under each.

    Args:
        images: (N, S, S, 3) floats in [0, 1] or uint8.
        generated: N caption strings.
        references: N reference strings or lists of strings (the first is shown), or None.
        path: where to save the PNG (None: do not save).
        columns: images per row.
        title: the figure title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    if len(generated) != n:
        raise ValueError(f"caption_grid needs one caption per image. Received: {n} images, {len(generated)} captions.")
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k])
        text = "\n".join(textwrap.wrap(f"gen: {generated[k]}", 34))
        if references is not None:
            ref = references[k] if isinstance(references[k], str) else references[k][0]
            text += "\n" + "\n".join(textwrap.wrap(f"ref: {ref}", 34))
        ax.set_title(text, fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
