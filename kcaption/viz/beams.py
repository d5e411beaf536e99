"""A picture of beam search: the beams of one image, step by step, as a tree."""

import numpy as np

FINISHED_COLOR, LIVE_COLOR, BEST_COLOR = "#8c959f", "#0969da", "#1a7f37"


def beam_steps(model, images_or_features, beam_width, max_length):
    """The beams of one image after each step: a list, step t = 1..max_length, of (ids (k, t), scores (k,)).

    Beam search is causal (the beams after step t do not depend on later
    steps), so the beams after step t are those of a search stopped at t.
    """
    from kcaption.decoding import beam_search

    next_logits, state, start = model.start_decoding(images_or_features[:1])
    steps = []
    for t in range(1, max_length + 1):
        ids, scores = beam_search(next_logits, state, start, beam_width, t, return_all=True)
        steps.append((np.asarray(ids)[0], np.asarray(scores)[0]))
    return steps


def plot_beams(model, images_or_features, vocab, beam_width=4, max_length=12, image=None, path=None):
    """Draw the beams of the first image: one column per step, one node per beam, an edge to its parent.

    A node shows the beam's last word and its log-probability; grey nodes are
    finished beams (they wrote `<END>` and are carried unchanged); the beam
    finally chosen is drawn in green.

    Args:
        model: a captioner (anything with `start_decoding`).
        images_or_features: what the model takes, for one or more images (the first is used).
        vocab: the model's `Vocabulary`.
        beam_width, max_length: the search's k and number of steps.
        image: optional (S, S, 3) picture to show beside the tree.
        path: where to save the PNG (None: do not save).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from kcaption.decoding import END, NULL

    steps = beam_steps(model, images_or_features, beam_width, max_length)
    last = max((t for t, (ids, _) in enumerate(steps) if not all(END in row for row in ids)), default=0) + 1
    steps = steps[: last + 1]  # up to the step after which every beam is finished
    final_ids = steps[-1][0][0]
    fig, ax = plt.subplots(figsize=(1.25 * len(steps) + (2.5 if image is not None else 0), 0.6 * beam_width + 1.2))
    if image is not None:
        inset = fig.add_axes([0.0, 0.15, 0.7 / (len(steps) + 2), 0.7])
        inset.imshow(image)
        inset.axis("off")
    for t, (ids, scores) in enumerate(steps):
        for rank, (row, score) in enumerate(zip(ids, scores)):
            prefix = row[: t + 1]
            finished = END in prefix[:-1] or (prefix[-1] == NULL)
            word = "<END>" if prefix[-1] == END else vocab.words[prefix[-1]] if not finished else "·"
            chosen = np.array_equal(prefix, final_ids[: t + 1])
            color = BEST_COLOR if chosen else FINISHED_COLOR if finished else LIVE_COLOR
            ax.annotate(f"{word}\n{score:.1f}", (t, -rank), ha="center", va="center", fontsize=8, color=color,
                        weight="bold" if chosen else "normal",
                        bbox={"boxstyle": "round", "fc": "white", "ec": color})
            if t:
                parents = [r for r, p in enumerate(steps[t - 1][0]) if np.array_equal(p[:t], prefix[:t])]
                if parents:
                    ax.plot([t - 1, t], [-parents[0], -rank], color=color, lw=1.5 if chosen else 0.8, zorder=0)
    ax.set_xlim(-0.6, len(steps) - 0.4)
    ax.set_ylim(-beam_width + 0.4, 0.6)
    ax.set_xticks(range(len(steps)), [f"step {t + 1}" for t in range(len(steps))], fontsize=8)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    caption = vocab.decode(final_ids)
    ax.set_title(f"beam search, k={beam_width}: {caption!r} (log-probabilities; grey: finished)", fontsize=9)
    if image is not None:
        fig.subplots_adjust(left=0.8 / (len(steps) + 2))
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig
