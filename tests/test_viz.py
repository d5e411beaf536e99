"""Pictures: caption grids marked right or wrong, laid out so that text never covers an image."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from kcaption.data import CaptionRecord, load_shapes
from kcaption.viz import caption_grid, objects_right

LONG = ("a small red circle to the left of a large blue square and a tiny green triangle "
        "above a big yellow diamond, all of them on a light grey background")


def _images(n):
    return np.linspace(0.0, 1.0, n * 8 * 8 * 3).reshape(n, 8, 8, 3)


def _drawn(fig):
    """The figure's image axes and its non-empty texts, as window boxes after a draw."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    image_boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images]
    axis_texts = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for t in [axis.label, *axis.get_ticklabels(which="both")]}  # none shown here
    texts = [t for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in axis_texts]
    return image_boxes, [(t.get_text(), t.get_window_extent(renderer)) for t in texts]


@pytest.mark.parametrize("references", [None, "long"])
def test_caption_grid_text_never_covers_an_image_or_other_text(references):
    n = 7  # two rows of 4, the last one short
    generated = [LONG if k % 2 else "a red circle" for k in range(n)]
    refs = None if references is None else [[LONG + " indeed"] for _ in range(n)]
    fig = caption_grid(_images(n), generated, refs, columns=4, title="held-out images",
                       correct=[True, False, None, True, False, True, None])
    images, texts = _drawn(fig)
    assert len(images) == n, f"expected one image axes per image ({n}), found {len(images)}"
    assert len(texts) == n * (1 if references is None else 2) + 1, [t for t, _ in texts]
    canvas = fig.bbox
    for text, box in texts:
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1, (
            f"text {text[:30]!r}... runs off the figure: {box} vs {canvas}"
        )
        for k, image in enumerate(images):
            assert not box.overlaps(image), f"text {text[:30]!r}... covers image {k}: {box} vs {image}"
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            assert not box_a.overlaps(box_b), f"texts overlap: {a[:30]!r}... and {b[:30]!r}..."
    plt.close(fig)


def test_caption_grid_marks_each_caption_right_or_wrong():
    fig = caption_grid(_images(3), ["a red circle", "a blue square", "a green star"],
                       correct=[True, False, None])
    _, texts = _drawn(fig)
    by_caption = {t.get_text().split(": ", 1)[1]: t for t in fig.findobj(matplotlib.text.Text) if ": " in t.get_text()}
    assert by_caption["a red circle"].get_text().startswith("✓ right"), [t for t, _ in texts]
    assert by_caption["a blue square"].get_text().startswith("✗ wrong"), [t for t, _ in texts]
    unknown = by_caption["a green star"].get_text()
    assert "right" not in unknown and "wrong" not in unknown, f"an unknown verdict is not marked: {unknown!r}"
    right, wrong, plain = (matplotlib.colors.to_hex(by_caption[c].get_color())
                           for c in ("a red circle", "a blue square", "a green star"))
    assert len({right, wrong, plain}) == 3, f"right, wrong and unknown should differ in colour: {right}, {wrong}, {plain}"
    plt.close(fig)


def test_caption_grid_wants_one_verdict_per_image():
    with pytest.raises(ValueError, match="Received: 2 images, 1 verdicts"):
        caption_grid(_images(2), ["a", "b"], correct=[True])


def test_objects_right_is_the_objects_exact_verdict_per_image():
    (record,) = load_shapes("val", n=1)
    pairs = [(o.color, o.shape) for o in record.objects]
    assert len(set(pairs)) == len(pairs), "this test wants an image whose colour-shape pairs differ"
    named = " and ".join(f"a {color} {shape}" for color, shape in reversed(pairs))  # any order
    repeated = named + " and a {} {}".format(*pairs[0])  # one object named twice
    photo = CaptionRecord("coco-1", "photo.jpg", ["a dog"])  # COCO: objects unknown
    got = objects_right([record, record, record, record, photo],
                        [record.captions[0], named, repeated, "a dog on the grass", "a dog"])
    assert got == [True, True, False, False, None], got


def test_objects_right_wants_one_caption_per_record():
    with pytest.raises(ValueError, match="Received: 1 records, 2 captions"):
        objects_right(load_shapes("val", n=1), ["a", "b"])


def test_attention_example_says_whether_the_caption_is_right():
    from kcaption.evaluation.localization import attention_example

    (record,) = load_shapes("val", n=1)
    right = record.captions[0].split()
    wrong = "a small green star".split()
    uniform = np.full((len(right), 16), 1 / 16)
    fig = attention_example(record, right, uniform)
    assert fig._suptitle.get_text().startswith("✓ right: " + record.captions[0]), fig._suptitle.get_text()
    right_color = matplotlib.colors.to_hex(fig._suptitle.get_color())
    plt.close(fig)
    fig = attention_example(record, wrong, uniform, note=" (a note)")
    title = fig._suptitle.get_text()
    assert title.startswith("✗ wrong: a small green star"), title
    assert all(o.phrase in title for o in record.objects), f"the title should name what the image has: {title!r}"
    assert title.endswith(" (a note)"), title
    assert matplotlib.colors.to_hex(fig._suptitle.get_color()) != right_color, "right and wrong titles look the same"
    plt.close(fig)


@pytest.mark.parametrize("spread", [0.0, 0.05, 1.0])
def test_plot_embeddings_labels_every_point_without_overlaps(spread):
    from kcaption.viz import plot_embeddings

    vectors = np.array([[-2.5, 2.8]] + [[0.7 + spread * np.cos(k), -0.6 + spread * np.sin(k)] for k in range(7)])
    labels = [f"word {k}" for k in range(len(vectors))]
    fig = plot_embeddings(vectors, labels, title="learned 2-d embeddings")
    (ax,) = fig.axes
    assert ax.get_xlabel() and ax.get_ylabel(), "both axes should say what they show"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = {t.get_text(): matplotlib.text.Text.get_window_extent(t, renderer) for t in ax.texts}  # no leader line
    assert sorted(boxes) == sorted(labels), f"one label per point: {sorted(boxes)}"
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), f"labels {a!r} and {b!r} overlap"
        assert fig.bbox.contains(boxes[a].x0, boxes[a].y0) and fig.bbox.contains(boxes[a].x1, boxes[a].y1), (
            f"label {a!r} runs off the figure")
        for k, (x, y) in enumerate(ax.transData.transform(vectors)):
            assert not boxes[a].contains(x, y), f"label {a!r} covers the point of {labels[k]!r}"
    plt.close(fig)


def test_plot_embeddings_wants_2d_vectors_and_one_label_each():
    from kcaption.viz import plot_embeddings

    with pytest.raises(ValueError, match=r"Received: vectors shape=\(3, 4\), 3 labels"):
        plot_embeddings(np.zeros((3, 4)), ["a", "b", "c"])


def test_plot_loss_curves_draws_the_threshold_it_is_given():
    from kcaption.viz import plot_loss_curves

    history = {"loss": [30.0, 10.0, 1.0], "val_loss": [31.0, 12.0, 3.0], "masked_token_accuracy": [0.1, 0.5, 0.9]}
    fig = plot_loss_curves(history, threshold=2.0)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["loss", "threshold 2", "val_loss"], sorted(lines)
    assert list(lines["threshold 2"].get_ydata()) == [2.0, 2.0]
    plt.close(fig)
    fig = plot_loss_curves(history)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss", "val_loss"]
    plt.close(fig)
