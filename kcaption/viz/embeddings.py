"""A scatter of 2-d word embeddings, one readable label per point."""

import numpy as np

FONT_SIZE = 9  # points
MARKER = 4  # points: half the side of the room a marker takes


def plot_embeddings(vectors, labels, path=None, title=None):
    """Scatter 2-d embedding rows and label each point; labels that would overlap are moved apart.

    Each label goes to the right of its point, or to its left; one that would
    cover another label or a point moves up or down to the nearest free place,
    with a thin line back to its point.

    Args:
        vectors: (N, 2) embedding rows.
        labels: N strings, e.g. the words.
        path: where to save the PNG (None: do not save).
        title: the figure title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    vectors = np.asarray(vectors, dtype="float64")
    if vectors.ndim != 2 or vectors.shape[1] != 2 or len(labels) != len(vectors):
        raise ValueError(
            "plot_embeddings needs (N, 2) vectors and N labels. "
            f"Received: vectors shape={vectors.shape}, {len(labels)} labels"
        )
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(vectors[:, 0], vectors[:, 1], s=25, zorder=2)
    ax.set(xlabel="embedding dimension 1", ylabel="embedding dimension 2", title=title)
    ax.margins(0.3)  # room for the labels
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ax.autoscale_view()  # fixes the limits: data -> display coordinates from here on
    points = ax.transData.transform(vectors) * 72 / fig.dpi  # where the points are drawn, in points
    taken = [(x - MARKER, y - MARKER, x + MARKER, y + MARKER) for x, y in points]  # boxes to keep clear

    def clear(x0, y0, width, height):
        return not any(x0 < b[2] and b[0] < x0 + width and y0 < b[3] and b[1] < y0 + height for b in taken)

    for k in np.argsort(points[:, 1], kind="stable"):
        x, y = points[k]
        width, height = 0.62 * FONT_SIZE * len(labels[k]), 1.3 * FONT_SIZE  # a generous estimate
        # The nearest free place: right of the point, then left of it, ever further up or down.
        candidates = ((x0, y - height / 2 + dy) for step in range(400) for dy in (2 * step, -2 * step)
                      for x0 in (x + 1.5 * MARKER, x - 1.5 * MARKER - width))
        x0, y0 = next(c for c in candidates if clear(*c, width, height))
        taken.append((x0, y0, x0 + width, y0 + height))
        moved = y0 != y - height / 2
        line = dict(arrowstyle="-", color="gray", lw=0.6, shrinkA=0, shrinkB=3) if moved else None
        ax.annotate(labels[k], vectors[k], xytext=(x0 - x, y0 + height / 2 - y), textcoords="offset points",
                    va="center", ha="left", fontsize=FONT_SIZE, arrowprops=line)
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
