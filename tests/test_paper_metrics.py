"""Paper-style evaluation (kcaption.evaluation.metrics): the scores against independent references, the COCO results file, the table.

These run no METEOR (its JVM takes seconds to start): `java=False`, or a
METEOR scorer stopped at once. tests/scale/test_paper_metrics_java.py scores
with METEOR against pycocoevalcap's own pipeline.
"""

import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from kcaption.errors import KcaptionWarning
from kcaption.evaluation import metrics
from kcaption.evaluation.metrics import (
    caption_scores,
    coco_results,
    format_scores,
    kit_tokenize,
    ptb_tokenize,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer and METEOR need Java")

# Every n-gram order has a match, so no smoothing convention matters. Image 3's
# hypothesis (3 words) is shorter than both references (6 and 4): the closest
# length, 4, sets a brevity penalty.
REFERENCES = [
    ["a small red circle", "there is a small red circle"],
    ["a blue square to the left of a red circle", "a blue square left of a red circle"],
    ["a green triangle on the right", "a big green triangle"],
]
HYPOTHESES = ["a small red circle", "a blue square to the left of a green circle", "a green triangle"]


def numbers(scores):
    """The scores that are numbers (pytest.approx compares no nested dict)."""
    return {k: v for k, v in scores.items() if isinstance(v, float)}


@pytest.fixture
def fresh_warnings():
    """caption_scores warns once per process: forget what it said before and after the test."""
    metrics._warn_once.cache_clear()
    yield
    metrics._warn_once.cache_clear()


class PopenLog:
    """Records every process started through subprocess.Popen (pycocoevalcap's METEOR, the PTB tokenizer)."""

    def __init__(self, monkeypatch):
        self.processes = []
        popen = subprocess.Popen
        log = self.processes

        class Recorded(popen):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                log.append(self)

        monkeypatch.setattr(subprocess, "Popen", Recorded)

    def assert_all_reaped(self):
        assert self.processes, "no process was started"
        running = [p.args for p in self.processes if p.returncode is None]
        assert not running, f"left running or unreaped (zombie): {running}"


def test_bleu_matches_nltk_corpus_bleu():
    from nltk.translate.bleu_score import corpus_bleu

    def nltk_bleu(references, hypotheses, n):  # no smoothing: every order has a match
        refs = [[r.split() for r in group] for group in references]
        return corpus_bleu(refs, [h.split() for h in hypotheses], weights=(1 / n,) * n)

    scores = caption_scores(REFERENCES, HYPOTHESES, java=False)
    for n in range(1, 4):
        assert scores[f"bleu{n}"] == pytest.approx(nltk_bleu(REFERENCES, HYPOTHESES, n), rel=1e-6), f"BLEU-{n}"
    # Where the conventions differ: a hypothesis shorter than n words (image 3 has no 4-gram) adds 1 to
    # nltk's n-gram count (max(1, count)), not to pycocoevalcap's, so nltk's BLEU-4 is lower here...
    assert scores["bleu4"] > nltk_bleu(REFERENCES, HYPOTHESES, 4) + 0.01
    # ... and equal when every hypothesis has 4 words or more.
    two = caption_scores(REFERENCES[:2], HYPOTHESES[:2], java=False)
    for n in range(1, 5):
        assert two[f"bleu{n}"] == pytest.approx(nltk_bleu(REFERENCES[:2], HYPOTHESES[:2], n), rel=1e-6), f"BLEU-{n}"
    # No 4-gram match in the whole corpus: nltk without smoothing gives 0 (with a warning), with method1
    # counts 0.1 match; pycocoevalcap's Bleu counts 1e-15 (so ~0).
    assert caption_scores([["a red circle"]], ["a red square"], java=False)["bleu4"] < 1e-4


def test_rouge_l_by_hand():
    # Image 1: LCS("a b c d e", "a c e f") = 3 ("a c e"): P = 3/4, R = 3/5; LCS("a c", "a c e f") = 2: P = 2/4,
    # R = 1. pycocoevalcap takes the best P and the best R over the references (3/4 and 1, not from one
    # reference), then F = (1 + b^2) P R / (R + b^2 P) with b = 1.2. Image 2, one reference: P = 3/4, R = 3/5.
    f = [(1 + 1.44) * 0.75 * 1.0 / (1.0 + 1.44 * 0.75), (1 + 1.44) * 0.75 * 0.6 / (0.6 + 1.44 * 0.75)]
    assert f == pytest.approx([0.879808, 0.653571], abs=1e-6)
    scores = caption_scores([["a b c d e", "a c"], ["a b c d e"]], ["a c e f", "a c e f"], java=False)
    assert scores["rouge_l"] == pytest.approx(np.mean(f), rel=1e-9)


def test_caption_scores_wraps_pycocoevalcap_scorers():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    references = [["A man, riding a horse.", "A person on a HORSE!"], ["Two dogs play in the snow."]]
    hypotheses = ["a man on a horse .", "two dogs in snow"]
    scores = caption_scores(references, hypotheses, java=False)
    # The scorers by hand, on the tokens the kit documents (kcaption.data.tokenize, punctuation dropped).
    gts = {0: ["a man riding a horse", "a person on a horse"], 1: ["two dogs play in the snow"]}
    res = {0: ["a man on a horse"], 1: ["two dogs in snow"]}
    assert [kit_tokenize(group) for group in references] == list(gts.values())
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [scores[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu, rel=1e-12)
    assert scores["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-12)
    assert scores["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], rel=1e-12)
    assert (scores["meteor"], scores["spice"], scores["tokenizer"]) == (None, None, "kcaption")
    assert set(scores["unavailable"]) == {"meteor", "spice"}
    assert list(scores)[:7] == ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"]
    json.dumps(scores)  # plain floats, ready for metrics.json


def test_caption_scores_pairs_each_hypothesis_with_its_references():
    order = [2, 0, 1]
    scores = caption_scores(REFERENCES, HYPOTHESES, java=False)
    shuffled = caption_scores([REFERENCES[i] for i in order], [HYPOTHESES[i] for i in order], java=False)
    assert numbers(shuffled) == pytest.approx(numbers(scores), rel=1e-12), "the images' order should not change a corpus score"
    mispaired = caption_scores(REFERENCES, [HYPOTHESES[i] for i in order], java=False)
    assert mispaired["cider"] < 0.5 * scores["cider"] and mispaired["bleu4"] < 0.5 * scores["bleu4"]
    perfect = caption_scores(REFERENCES, [group[0] for group in REFERENCES], java=False)
    assert perfect["bleu4"] == pytest.approx(1.0) and perfect["rouge_l"] == pytest.approx(1.0)
    assert perfect["cider"] > 1.0


def test_caption_scores_empty_captions_and_bad_input():
    empty = caption_scores(REFERENCES, ["", "", ""], java=False)  # a model that says <END> at once
    assert [empty[k] for k in ["bleu1", "bleu4", "rouge_l", "cider"]] == pytest.approx([0, 0, 0, 0], abs=1e-6)
    with pytest.raises(ValueError, match="Received: 3 reference lists and 2 hypotheses"):
        caption_scores(REFERENCES, HYPOTHESES[:2], java=False)
    with pytest.raises(ValueError, match="Received: 0 reference lists and 0 hypotheses"):
        caption_scores([], [], java=False)
    with pytest.raises(ValueError, match=r"references\[1\]=\[\]"):
        caption_scores([["a red circle"], []], ["a", "b"], java=False)
    with pytest.raises(ValueError, match=r"references\[0\]='a red circle'"):
        caption_scores(["a red circle"], ["a"], java=False)
    with pytest.raises(ValueError, match=r"hypotheses\[0\]=\['a'\]"):
        caption_scores([["a red circle"]], [["a"]], java=False)


def test_without_java_the_rest_is_scored_with_the_kit_tokenizer(monkeypatch, tmp_path, fresh_warnings):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    with pytest.warns(KcaptionWarning, match=r"METEOR and the PTB tokenizer are not run: needs Java") as caught:
        scores = caption_scores(REFERENCES, HYPOTHESES)
    assert len(caught) == 1
    assert numbers(scores) == pytest.approx(numbers(caption_scores(REFERENCES, HYPOTHESES, java=False)))
    assert len(numbers(scores)) == 6
    assert (scores["tokenizer"], scores["meteor"]) == ("kcaption", None)
    assert "needs Java" in scores["unavailable"]["meteor"] and "offline" in scores["unavailable"]["spice"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caption_scores(REFERENCES, HYPOTHESES)  # said once is enough


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for a broken java")
def test_a_broken_java_falls_back_and_leaves_no_process(monkeypatch, tmp_path, fresh_warnings):
    # What macOS ships without a JDK: a `java` that prints an error and exits.
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'No Java runtime present, requesting install.' >&2\nexit 1\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    processes = PopenLog(monkeypatch)
    with pytest.warns(KcaptionWarning, match="Java failed: the PTB tokenizer failed .*No Java runtime present"):
        scores = caption_scores(REFERENCES, HYPOTHESES)
    assert (scores["tokenizer"], scores["meteor"]) == ("kcaption", None)
    assert "No Java runtime present" in scores["unavailable"]["meteor"]
    assert len(processes.processes) == 2  # METEOR's (started first), the tokenizer's
    processes.assert_all_reaped()


@needs_java
@pytest.mark.parametrize("error", [OSError("Broken pipe"), RuntimeError("interrupted")])
def test_meteor_jvm_is_killed_and_its_lock_freed_on_error(monkeypatch, error, fresh_warnings):
    from pycocoevalcap.meteor.meteor import Meteor

    scorers = []

    def fail(self, hypothesis, references):  # the first exchange with the JVM, inside compute_score's lock
        scorers.append(self)
        raise error

    monkeypatch.setattr(Meteor, "_stat", fail)
    processes = PopenLog(monkeypatch)
    if isinstance(error, OSError):  # the JVM went away: reported, the rest scored
        with pytest.warns(KcaptionWarning, match="METEOR is not computed: METEOR failed"):
            scores = caption_scores(REFERENCES, HYPOTHESES)
        assert scores["meteor"] is None and scores["tokenizer"] == "ptb"
        assert scores["unavailable"]["meteor"].startswith("METEOR failed")
    else:  # anything else propagates, after the clean-up
        with pytest.raises(RuntimeError, match="interrupted"):
            caption_scores(REFERENCES, HYPOTHESES)
    (scorer,) = scorers
    locked = scorer.lock.locked()
    if locked:
        scorer.lock.release()  # or Meteor.__del__ would hang this test run
    assert not locked, "Meteor's lock is still held: its __del__ would hang the interpreter"
    processes.assert_all_reaped()


@needs_java
def test_a_meteor_that_gives_no_answer_is_killed(monkeypatch, fresh_warnings):
    monkeypatch.setattr(metrics, "ptb_tokenize", lambda captions, timeout: kit_tokenize(captions))  # no JVM
    processes = PopenLog(monkeypatch)
    with pytest.warns(KcaptionWarning, match=r"METEOR gave no answer within 0.2 s"):
        scores = caption_scores(REFERENCES, HYPOTHESES, timeout=0.2)  # its JVM needs seconds to load
    assert scores["meteor"] is None and scores["bleu4"] > 0.5
    processes.assert_all_reaped()


@needs_java
def test_ptb_tokenize_matches_pycocoevalcap(tmp_path):
    from pycocoevalcap.tokenizer import ptbtokenizer

    captions = ["A man's hat, on a T-shirt.", "", "Don't\tstop:\nit's (very) red!", "two  dogs", "..."]
    got = ptb_tokenize(captions)
    if not os.access(os.path.dirname(ptbtokenizer.__file__), os.W_OK):
        pytest.skip("pycocoevalcap's PTBTokenizer writes a temporary file into its installed folder: read-only here")
    expected = ptbtokenizer.PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert got == [expected[i][0] for i in range(len(captions))]
    assert got[0] == "a man 's hat on a t-shirt"
    # The kit's tokenizer agrees on plain words, not on contractions and hyphens.
    assert kit_tokenize(["Two  dogs", "A man's T-shirt."]) == ["two dogs", "a man s t shirt"]


def test_coco_results_round_trip_through_pycocotools(tmp_path, capsys):
    from pycocotools.coco import COCO

    ids, captions = ["391895", "522418", "184613"], ["a man riding a bike", "a woman cutting a cake", ""]
    path = metrics.write_coco_results(tmp_path / "captions_val2014_kcaption_results.json", ids, captions)
    written = json.loads(path.read_text())
    assert written == [{"image_id": int(i), "caption": c} for i, c in zip(ids, captions)]  # ids as numbers
    assert all(type(r["image_id"]) is int and type(r["caption"]) is str for r in written)
    ground_truth = tmp_path / "captions_val2014.json"
    ground_truth.write_text(json.dumps({
        "images": [{"id": int(i), "file_name": f"{i}.jpg"} for i in ids],
        "annotations": [{"id": k, "image_id": int(i), "caption": "a caption"} for k, i in enumerate(ids)],
    }))
    results = COCO(str(ground_truth)).loadRes(str(path))
    capsys.readouterr()  # pycocotools prints its progress
    assert sorted(results.getImgIds()) == sorted(int(i) for i in ids)
    assert [results.imgToAnns[int(i)][0]["caption"] for i in ids] == captions


def test_coco_results_ids_and_bad_input():
    got = coco_results([np.int64(7), 8, "shapes-val-0003"], ["a", "b", "c"])
    assert [r["image_id"] for r in got] == [7, 8, "shapes-val-0003"] and type(got[0]["image_id"]) is int
    with pytest.raises(ValueError, match="Received: 2 image ids and 1 captions"):
        coco_results([1, 2], ["a"])
    with pytest.raises(ValueError, match="Received: image_id=5 twice"):
        coco_results([5, "5"], ["a", "b"])
    with pytest.raises(TypeError, match="Received: image_id=1.5"):
        coco_results([1.5], ["a"])


def test_format_scores_prints_the_paper_table():
    scores = {"bleu1": 0.7214, "bleu2": 0.55, "bleu3": 0.412, "bleu4": 0.3089, "meteor": None, "rouge_l": 0.533,
              "cider": 0.9571, "spice": None, "tokenizer": "kcaption", "images": 5000,
              "unavailable": {"meteor": "needs Java", "spice": "offline"}}
    assert format_scores(scores).splitlines() == [
        "BLEU-1  BLEU-2  BLEU-3  BLEU-4  METEOR  ROUGE-L  CIDEr-D  SPICE",
        "  72.1    55.0    41.2    30.9     n/a     53.3     95.7    n/a",
        "x 100, on 5000 images, kcaption tokenizer (no Java). n/a: METEOR (needs Java); SPICE (offline).",
    ]
    old = format_scores({"bleu4": 0.5, "cider": 1.0})  # an older metrics.json: BLEU-4 and CIDEr-D only
    assert old.splitlines()[1].split() == ["n/a", "n/a", "n/a", "50.0", "n/a", "n/a", "100.0", "n/a"]
