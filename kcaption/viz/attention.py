"""Per-word attention overlays: where the captioner looked for each word."""

import numpy as np


def sample_with_attention(model, images_or_features, max_length=16, **decoding):
    """Captions and the attention weights each word was written with.

    For an attention LSTM (`CaptioningRNN(cell_type="attn")`): the weights of
    its `dot_product_attention` at every step. For a `CaptioningTransformer`:
    its last layer's cross-attention averaged over the heads. Both come from
    feeding the chosen words back in (`caption_attention`): the same numbers as
    while decoding, for greedy and beam search alike, since each step sees only
    the words before it.

    Args:
        model: a trained attention captioner.
        images_or_features: what the model's `call` takes first.
        max_length: number of words generated.
        **decoding: `model.sample`'s decoding arguments (default: greedy).

    Returns:
        `(ids, attention)`: int (N, max_length) and float (N, max_length, L).
    """
    from keras import ops

    _check_attention_model(model)
    ids = model.sample(images_or_features, max_length, compiled=False, **decoding)  # one call: tracing costs more
    return ops.convert_to_numpy(ids), caption_attention(model, images_or_features, ids)


def caption_attention(model, images_or_features, ids):
    """The attention weights (N, T, L) with which an attention captioner writes the words `ids` (N, T)."""
    from keras import ops

    from kcaption.decoding import START
    from kcaption.layers.attention import dot_product_attention
    from kcaption.models import CaptioningTransformer

    _check_attention_model(model)
    ids = ops.cast(ids, "int32")
    start = ops.full((ops.shape(ids)[0], 1), START, dtype="int32")
    captions_in = ops.concatenate([start, ids[:, :-1]], axis=1)  # what each step was fed
    if isinstance(model, CaptioningTransformer):
        _, attention = model((images_or_features, captions_in), training=False, return_attention=True)
        return ops.convert_to_numpy(attention)
    A = model.feature_projection(model.encode(images_or_features, training=False))  # (N, L, H)
    state, recorded = model.initial_state(A), []
    for t in range(ids.shape[1]):
        recorded.append(dot_product_attention(state[0], state[2])[1])  # what step t attends to
        _, state = model.next_logits(captions_in[:, t], state)
    return ops.convert_to_numpy(ops.stack(recorded, axis=1))


def _check_attention_model(model):
    from kcaption.models import CaptioningTransformer

    if not isinstance(model, CaptioningTransformer) and getattr(model, "cell_type", None) != "attn":
        raise ValueError(
            "An attention picture needs an attention captioner (attn or transformer). "
            f"Received: model={type(model).__name__}(cell_type={getattr(model, 'cell_type', None)!r})"
        )


def attention_grid(weights):
    """Reshape (L,) attention weights over a square grid into (g, g), row-major."""
    weights = np.asarray(weights, dtype="float32")
    side = int(round(weights.shape[-1] ** 0.5))
    if side * side != weights.shape[-1]:
        raise ValueError(
            f"Attention weights must cover a square grid (L = g * g). Received: L={weights.shape[-1]}"
        )
    return weights.reshape(*weights.shape[:-1], side, side)


def attention_overlay(image, words, attention, path=None, columns=6, title=None, boxes=None, title_color="black"):
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
        title_color: the title's colour (e.g. green for a right caption).

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
    fig.suptitle(title if title is not None else " ".join(words), fontsize=10, color=title_color)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
