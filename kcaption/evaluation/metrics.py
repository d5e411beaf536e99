"""Caption metrics: token accuracy for `fit`, and the paper set on generated captions.

The paper set is what the COCO caption server reports (Chen et al., 2015,
"Microsoft COCO Captions: Data Collection and Evaluation Server"), computed
with pycocoevalcap's scorers called directly: BLEU-1..4, METEOR, ROUGE-L and
CIDEr-D on captions tokenized by Stanford's PTB tokenizer, punctuation dropped.
METEOR and the PTB tokenizer run on Java; without it the kit says so once,
tokenizes with `kcaption.data.tokenize` (same punctuation dropped) and reports
the rest. SPICE is not computed: it downloads Stanford CoreNLP models.

`coco_results` / `write_coco_results` write the results file the server takes,
and `format_scores` prints the scores as a paper's table row.
"""

import contextlib
import functools
import json
import operator
import os
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

import keras
from keras import ops

from kcaption.data import tokenize
from kcaption.errors import KcaptionWarning


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


SPICE_UNAVAILABLE = "offline: it downloads Stanford CoreNLP models (about 400 MB) on first use"

# The table's columns: (heading, key of `caption_scores`).
PAPER_COLUMNS = (
    ("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4"),
    ("METEOR", "meteor"), ("ROUGE-L", "rouge_l"), ("CIDEr-D", "cider"), ("SPICE", "spice"),
)


class JavaError(RuntimeError):
    """A Java tool of pycocoevalcap did not run (no usable JVM, or it died or hung)."""


@functools.cache
def _warn_once(message):
    warnings.warn(message, KcaptionWarning, stacklevel=3)


def _punctuation():
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    return frozenset(PUNCTUATIONS)


def ptb_tokenize(captions, timeout=600):
    """Tokenize captions as the COCO server does: Stanford's PTB tokenizer, lower case, punctuation dropped.

    What pycocoevalcap's `PTBTokenizer` does, in one JVM, through pipes
    rather than a temporary file in the installed package (which may be
    read-only). Needs Java.

    Args:
        captions: a list of str.
        timeout: seconds before the JVM is killed.

    Returns:
        A list of str, one per caption: its tokens joined by spaces,
        e.g. "A man's hat." -> "a man 's hat".

    Raises:
        JavaError: the tokenizer did not run (no Java, a broken one, a timeout).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    command = ["java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", "-encoding", "utf-8"]
    # One caption per line, whatever whitespace (a newline would split it) it holds.
    text = "".join(" ".join(caption.split()) + "\n" for caption in captions)
    try:
        done = subprocess.run(command, cwd=os.path.dirname(ptbtokenizer.__file__), input=text.encode("utf-8"),
                              capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JavaError(f"the PTB tokenizer did not run: {error}") from None
    lines = done.stdout.decode("utf-8").split("\n")  # one per caption, then "" after the last newline
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", errors="replace").strip()
        raise JavaError(f"the PTB tokenizer failed (exit code {done.returncode}): {stderr[-300:]}")
    if len(lines) != len(captions) + 1:
        raise JavaError(f"the PTB tokenizer gave {len(lines) - 1} lines for {len(captions)} captions")
    punctuation = _punctuation()
    return [" ".join(w for w in line.split(" ") if w and w not in punctuation) for line in lines[: len(captions)]]


def kit_tokenize(captions):
    """Tokenize captions with `kcaption.data.tokenize`, dropping the punctuation the PTB path drops.

    The fallback without Java. It differs from `ptb_tokenize` on contractions
    and hyphens ("don't" -> "don t", not "do n't"; "t-shirt" -> "t shirt"), not
    on plain words, so the shapes data scores the same either way.

    Args:
        captions: a list of str.

    Returns:
        A list of str, one per caption: its tokens joined by spaces.
    """
    punctuation = _punctuation()
    return [" ".join(w for w in tokenize(caption) if w not in punctuation) for caption in captions]


@contextlib.contextmanager
def _meteor_scorer():
    """pycocoevalcap's `Meteor` (its JVM starts now), killed and reaped on the way out, even on error.

    `Meteor.compute_score` keeps its lock when it fails, and `Meteor.__del__`
    waits for that lock, so a failed scorer would hang the interpreter when
    collected: the lock is released here once its JVM is gone.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as error:
        raise JavaError(f"METEOR did not start: {error}") from None
    try:
        yield scorer
    finally:
        process = scorer.meteor_p
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):  # a broken pipe's unsent bytes
                pipe.close()
        if scorer.lock.locked():
            scorer.lock.release()


def _meteor(scorer, gts, res, timeout):
    """METEOR of tokenized `gts`/`res` by a started `_meteor_scorer`; its JVM is killed after `timeout` s."""
    process = scorer.meteor_p
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        process.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (ValueError, OSError):  # its output ended: the JVM died, or was killed
        process.kill()
        process.wait()
        if timed_out.is_set():
            raise JavaError(f"METEOR gave no answer within {timeout:g} s") from None
        stderr = process.stderr.read().decode("utf-8", errors="replace").strip()
        raise JavaError(f"METEOR failed (exit code {process.returncode}): {stderr[-300:]}") from None
    finally:
        watchdog.cancel()
    return float(score)


def _check_captions(references, hypotheses):
    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError(
            "caption_scores needs one list of references per hypothesis, and at least one image. "
            f"Received: {len(references)} reference lists and {len(hypotheses)} hypotheses."
        )
    for k, (group, hypothesis) in enumerate(zip(references, hypotheses)):
        if isinstance(group, str) or not group or not all(isinstance(r, str) for r in group):
            raise ValueError(
                f"caption_scores needs a non-empty list of reference captions (str) per image. "
                f"Received: references[{k}]={group!r}"
            )
        if not isinstance(hypothesis, str):
            raise ValueError(f"caption_scores needs one caption (str) per image. Received: hypotheses[{k}]={hypothesis!r}")


def caption_scores(references, hypotheses, *, java=True, timeout=600):
    """The COCO paper set: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (pycocoevalcap's scorers), in [0, 1] (CIDEr-D: [0, 10]).

    Captions are tokenized by `ptb_tokenize` (as the COCO server does), or by
    `kit_tokenize` when Java is missing or fails (then METEOR is not computed
    either, and a `KcaptionWarning` says so, once per process). Scores are
    corpus-level: BLEU over all n-gram counts, the others the mean over images.

    BLEU-n is pycocoevalcap's `Bleu(4)`: clipped n-gram precisions, geometric
    mean, brevity penalty from the reference length closest to each
    hypothesis's. That is nltk's `corpus_bleu` with weights (1/n, ...) (the kit's
    BLEU-4 until issue 12), except where an n-gram order has no match in the
    whole corpus: nltk's `method1` smoothing counts 0.1 match there, `Bleu`
    about 1e-15 (a score of ~0); and the tokens differ where `ptb_tokenize`
    differs from `kcaption.data.tokenize` (punctuation, contractions).
    CIDEr-D is pycocoevalcap's `Cider` (as the official coco-caption code):
    TF-IDF n-grams with document frequencies over these references, clipped
    counts, a Gaussian length penalty (sigma 6), times 10.

    Args:
        references: one list of reference captions (str) per image.
        hypotheses: one generated caption (str) per image, same order.
        java: False runs no Java tool, for cheap repeated scoring (tests, a
            per-epoch callback): `kit_tokenize`, no METEOR, no warning. METEOR's
            JVM takes 8-20 s to start, whatever the number of images.
        timeout: seconds before a Java tool that gives no answer is killed.

    Returns:
        {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider":
        float, or None when not computed; "spice": None; "tokenizer": "ptb" or
        "kcaption"; "unavailable": {metric: why it is None}}.

    Raises:
        ValueError: the counts differ, there is no image, or an image has no
            reference.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    _check_captions(references, hypotheses)
    unavailable = {"spice": SPICE_UNAVAILABLE}
    captions = [r for group in references for r in group] + list(hypotheses)
    java_error = None if shutil.which("java") else "needs Java (`java` on PATH)"
    if not java:
        java_error = "not computed (java=False)"
    with contextlib.ExitStack() as stack:
        scorer = meteor_error = None
        if java_error is None:  # its JVM loads its paraphrase table (seconds) while the rest is scored
            try:
                scorer = stack.enter_context(_meteor_scorer())
            except JavaError as error:
                meteor_error = error
        tokens = None
        if java_error is None:
            try:
                tokens = ptb_tokenize(captions, timeout=timeout)
            except JavaError as error:
                java_error = f"Java failed: {error}"
        tokenizer = "kcaption" if tokens is None else "ptb"
        tokens = kit_tokenize(captions) if tokens is None else tokens
        gts, start = {}, 0
        for i, group in enumerate(references):
            gts[i], start = tokens[start : start + len(group)], start + len(group)
        res = {i: [tokens[start + i]] for i in range(len(hypotheses))}

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores = {f"bleu{n}": float(b) for n, b in enumerate(bleu, start=1)}
        rouge_l = float(Rouge().compute_score(gts, res)[0])
        cider = float(Cider().compute_score(gts, res)[0])
        scores["meteor"] = None
        if java_error is not None:
            unavailable["meteor"] = java_error
        else:
            try:
                if meteor_error is not None:
                    raise meteor_error
                scores["meteor"] = _meteor(scorer, gts, res, timeout)
            except JavaError as error:
                unavailable["meteor"] = str(error)
                _warn_once(f"METEOR is not computed: {error}.")
    if java and java_error is not None:
        _warn_once(f"METEOR and the PTB tokenizer are not run: {java_error}; the other scores use "
                   "kcaption.data.tokenize, so they may differ slightly from the COCO server's.")
    return {**scores, "rouge_l": rouge_l, "cider": cider, "spice": None, "tokenizer": tokenizer,
            "unavailable": unavailable}


def _coco_image_id(image_id):
    if isinstance(image_id, str):
        return int(image_id) if image_id.isascii() and image_id.isdigit() else image_id
    try:
        return operator.index(image_id)  # an int, or a NumPy integer
    except TypeError:
        raise TypeError(f"An image id must be an int or a str. Received: image_id={image_id!r}") from None


def coco_results(image_ids, captions):
    """The results list the COCO caption server takes: one {"image_id", "caption"} per image.

    Args:
        image_ids: one id per caption: an int, or a str (a record's
            `image_id`); a str of digits becomes an int, as the server wants.
        captions: one generated caption (str) per image.

    Returns:
        A list of dicts, e.g. [{"image_id": 391895, "caption": "a man riding a bike"}].

    Raises:
        ValueError: the counts differ, or an id is repeated (the server scores
            one caption per image).
    """
    if len(image_ids) != len(captions):
        raise ValueError(
            "coco_results needs one image id per caption. "
            f"Received: {len(image_ids)} image ids and {len(captions)} captions."
        )
    results, seen = [], set()
    for image_id, caption in zip(image_ids, captions):
        image_id = _coco_image_id(image_id)
        if image_id in seen:
            raise ValueError(f"coco_results needs one caption per image. Received: image_id={image_id!r} twice.")
        seen.add(image_id)
        results.append({"image_id": image_id, "caption": str(caption)})
    return results


def write_coco_results(path, image_ids, captions):
    """Write `coco_results(image_ids, captions)` as JSON to `path` (replaced if it exists); returns the Path."""
    path = Path(path)
    path.write_text(json.dumps(coco_results(image_ids, captions)))
    return path


def format_scores(scores):
    """The paper table of `caption_scores`' result: a heading row, a row of scores x 100, and notes.

    Example:

    ```
    BLEU-1  BLEU-2  BLEU-3  BLEU-4  METEOR  ROUGE-L  CIDEr-D  SPICE
      72.1    55.0    41.2    30.9    25.0     53.3     95.7    n/a
    x 100, on 5000 images, PTB tokenizer. n/a: SPICE (offline: ...).
    ```

    Args:
        scores: a dict with `caption_scores`' keys (a missing or None score
            prints "n/a"); "images" and "tokenizer" go into the notes.

    Returns:
        A str of three lines.
    """
    cells = [("n/a" if scores.get(key) is None else f"{100 * scores[key]:.1f}") for _, key in PAPER_COLUMNS]
    widths = [max(len(heading), len(cell)) for (heading, _), cell in zip(PAPER_COLUMNS, cells)]
    heading = "  ".join(h.rjust(w) for (h, _), w in zip(PAPER_COLUMNS, widths))
    row = "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    notes = ["x 100"]
    if "images" in scores:
        notes.append(f"on {scores['images']} images")
    if "tokenizer" in scores:
        notes.append({"ptb": "PTB tokenizer", "kcaption": "kcaption tokenizer (no Java)"}[scores["tokenizer"]])
    why = scores.get("unavailable", {})
    missing = [f"{h} ({why[k]})" if k in why else h for h, k in PAPER_COLUMNS if scores.get(k) is None]
    note = ", ".join(notes) + "."
    if missing:
        note += " n/a: " + "; ".join(missing) + "."
    return "\n".join([heading, row, note])
