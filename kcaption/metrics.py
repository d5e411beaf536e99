"""Caption metrics: token accuracy for `fit`, and BLEU-4 / CIDEr / ROUGE-L on generated captions.

BLEU-4 is nltk's `corpus_bleu` (Papineni et al., 2002) on the kit's tokens;
CIDEr-D and ROUGE-L are pycocoevalcap's scorers, called directly (their Java
tokenizer and METEOR need Java, which the kit does not assume).
"""

import keras
from keras import ops

from kcaption.data import tokenize


@keras.saving.register_keras_serializable(package="kcaption")
class MaskedTokenAccuracy(keras.metrics.Metric):
    """Share of the non-`<NULL>` targets whose argmax prediction is right (teacher forcing).

    A Keras mask carried by the predictions is not used: the targets say which
    positions count (the input mask is shifted by one step from the target's).
    """

    def __init__(self, ignore_index=0, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = ignore_index
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        keep = ops.cast(ops.not_equal(y_true, self.ignore_index), "float32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hits * keep))
        self.total.assign_add(ops.sum(keep))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}


def bleu4(references, hypotheses):
    """Corpus BLEU-4 (nltk), in [0, 1].

    Args:
        references: one list of reference captions (str) per image.
        hypotheses: one generated caption (str) per image.
    """
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(
            "bleu4 needs one list of references per hypothesis. "
            f"Received: {len(references)} reference lists and {len(hypotheses)} hypotheses."
        )
    refs = [[tokenize(r) for r in group] for group in references]
    hyps = [tokenize(h) for h in hypotheses]
    # method1 only matters when an n-gram order has no match at all (tiny runs).
    return float(corpus_bleu(refs, hyps, smoothing_function=SmoothingFunction().method1))


def coco_scores(references, hypotheses):
    """CIDEr-D and ROUGE-L from pycocoevalcap's scorers: {"cider": ..., "rouge_l": ...}."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [" ".join(tokenize(r)) for r in group] for i, group in enumerate(references)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hypotheses)}
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"cider": float(cider), "rouge_l": float(rouge)}


def object_scores(objects, hypotheses):
    """Does each caption name the right objects? For data whose records know them (shapes).

    BLEU rewards shared n-grams, so "a red square" for a red circle still scores
    well. This checks the meaning: the (colour, shape) pairs a caption names
    (`caption_objects`) against the image's objects.

    Args:
        objects: one list of `ShapeObject`s per image.
        hypotheses: one generated caption (str) per image.

    Returns:
        {"objects_exact": share of images whose caption names exactly their
        objects, each once; "object_precision": share of named pairs that are in
        the image, a repeated pair counting as wrong; "object_recall": share of
        the images' objects that are named}.
    """
    from kcaption.data import caption_objects

    if len(objects) != len(hypotheses) or not objects:
        raise ValueError(
            "object_scores needs one list of objects per hypothesis, and at least one image. "
            f"Received: {len(objects)} object lists and {len(hypotheses)} hypotheses."
        )
    exact = named = right = total = 0
    for image_objects, caption in zip(objects, hypotheses):
        truth = {(o.color, o.shape) for o in image_objects}
        pairs = caption_objects(caption)
        exact += sorted(pairs) == sorted(truth)
        named += len(pairs)
        right += len(truth.intersection(pairs))  # a repeated pair is right once
        total += len(truth)
    return {
        "objects_exact": exact / len(objects),
        "object_precision": right / named if named else 0.0,
        "object_recall": right / total if total else 0.0,
    }


def caption_scores(references, hypotheses):
    """Every caption metric the kit computes, as a dict others can add keys to."""
    return {"bleu4": bleu4(references, hypotheses), **coco_scores(references, hypotheses)}
