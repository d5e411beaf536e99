"""The paper set with Java (instructor-only: METEOR's JVM takes 8-20 s to start): caption_scores against pycocoevalcap.

The reference is pycocoevalcap's own pipeline, as its COCOEvalCap runs it (less
SPICE, which downloads models): PTBTokenizer, then Bleu(4), Rouge and Cider on
its tokens, and METEOR_EXPECTED, what its Meteor gave on those tokens (recorded,
so that the test starts one METEOR JVM, not two: 15 s, not 30).
"""

import shutil
import subprocess

import pytest

from kcaption.evaluation.metrics import caption_scores

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokenizer need Java")

REFERENCES = [
    ["A man riding a horse on the beach.", "A person rides a brown horse along the shore."],
    ["Two dogs play in the snow.", "A couple of dogs playing outside in the snow!"],
    ["A plate of food with broccoli, rice and meat.", "Dinner: meat, rice and some broccoli."],
]
HYPOTHESES = ["a man rides a horse on a beach", "two dogs are playing in the snow", ""]
# pycocoevalcap 1.2's Meteor (meteor-1.5.jar), compute_score on the PTBTokenizer's tokens of the captions above.
METEOR_EXPECTED = 0.5430613427522833


def reference_scores():
    """pycocoevalcap's scores of REFERENCES / HYPOTHESES, but METEOR."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in group] for i, group in enumerate(REFERENCES)})
    res = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(HYPOTHESES)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {
        **{f"bleu{n}": b for n, b in enumerate(bleu, start=1)},
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "cider": Cider().compute_score(gts, res)[0],
    }


def test_caption_scores_equal_pycocoevalcaps_pipeline_and_leave_no_process(monkeypatch):
    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", Recorded)
        scores = caption_scores(REFERENCES, HYPOTHESES)
    assert (scores["tokenizer"], scores["spice"]) == ("ptb", None) and set(scores["unavailable"]) == {"spice"}
    expected = reference_scores()
    assert {k: scores[k] for k in expected} == pytest.approx(expected, rel=1e-9)
    assert scores["meteor"] == pytest.approx(METEOR_EXPECTED, rel=1e-9)
    assert len(started) == 2 and all(p.returncode is not None for p in started), "a JVM left running or unreaped"
