"""Loss curves from a Keras `History`."""


def plot_loss_curves(history, path=None, title="Training", threshold=None):
    """Plot every `loss`-like series of a history (train and `val_`), one line each.

    Args:
        history: a `keras.callbacks.History` or its `.history` dict.
        path: where to save the PNG (None: do not save).
        title: the figure title.
        threshold: a loss to draw as a dashed line, e.g. an overfit check's (None: none).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    series = getattr(history, "history", history)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        if name.endswith("loss"):
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="epoch", ylabel="loss (summed over the caption)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
