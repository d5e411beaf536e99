"""Per-word attention overlays: where the captioner looked for each word."""

import numpy as np


def attention_grid(weights):
    """Reshape (L,) attention weights over a square grid into (g, g), row-major."""
    weights = np.asarray(weights, dtype="float32")
    side = int(round(weights.shape[-1] ** 0.5))
    if side * side != weights.shape[-1]:
        raise ValueError(
            f"Attention weights must cover a square grid (L = g * g). Received: L={weights.shape[-1]}"
        )
    return weights.reshape(*weights.shape[:-1], side, side)


def attention_overlay(image, words, attention, path=None, columns=6, title=None, boxes=None):
    """Show the image, then one panel per word with that step's attention over it.

    Args:
        image: (S, S, 3) floats in [0, 1] or uint8.
        words: the generated words (without `<END>`), word t from decoding step t.
        attention: (T, L) attention weights, T >= len(words), over a square
            grid of L cells (an attention LSTM's weights, or a transformer's
            last-layer cross-attention averaged over heads).
        path: where to save the PNG (None: do not save).
        columns: panels per row.
        title: the figure title (default: the caption).
        boxes: optional {word index: (x0, y0, x1, y1)}: a box drawn on that
            word's panel (e.g. the object the word describes).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = np.asarray(image)
    grids = attention_grid(attention)
    if grids.shape[0] < len(words):
        raise ValueError(
            f"attention_overlay needs a row of attention per word. "
            f"Received: {len(words)} words, attention shape={np.shape(attention)}"
        )
    size = image.shape[0]
    panels = len(words) + 1
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= panels:
            continue
        ax.imshow(image)
        if k == 0:
            ax.set_title("image", fontsize=9)
            continue
        t = k - 1
        grid = grids[t] / max(float(grids[t].max()), 1e-8)
        ax.imshow(grid, cmap="magma", alpha=0.6, extent=(0, size, size, 0), interpolation="bilinear",
                  vmin=0.0, vmax=1.0)
        if boxes and t in boxes:
            x0, y0, x1, y1 = boxes[t]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=1.5))
        ax.set_title(words[t], fontsize=10)
    fig.suptitle(title if title is not None else " ".join(words), fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
