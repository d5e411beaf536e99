"""Lesson 07: CIDEr-D (kcaption.evaluation.cider), against pycocoevalcap's official code and by hand."""

import math

import numpy as np
import pytest

from kcaption import mistakes
from kcaption.evaluation.cider import DocumentFrequency, cider_d
from kcaption.testing import assert_close


def official(references, candidates):
    """pycocoevalcap's `Cider` (the coco-caption code, CIDEr-D): (corpus, per image) on str captions."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: list(group) for i, group in enumerate(references)}
    res = {i: [caption] for i, caption in enumerate(candidates)}
    score, per_image = Cider().compute_score(gts, res)
    return float(score), np.asarray(per_image, np.float64)


def score(references, candidates):
    """Scenario: cider_d with document frequencies from the references being scored."""
    return cider_d(references, candidates)


def score_each_against_corpus(references, candidates):
    """Scenario: each image scored alone, with the whole corpus's document frequencies."""
    df = DocumentFrequency.from_references(references)
    return [cider_d([group], [caption], document_frequency=df) for group, caption in zip(references, candidates)]


SHAPES = (  # 3 images; 2, 3 and 1 references; the candidates shorter, longer, equal
    [
        ["a small red circle", "there is a small red circle"],
        ["a blue square to the left of a red circle", "a blue square left of a red circle", "a square and a circle"],
        ["a green triangle on the right"],
    ],
    ["a red circle", "a blue square to the left of a green circle in the middle of the image", "a green triangle on the right"],
)
REPEATS = (  # repeated n-grams in the candidates (clipping) and in the references (tf > 1)
    [
        ["a red circle and a red square", "a red circle"],
        ["a a a a", "a dog and a cat"],
        ["the cat sat on the mat", "a cat on a mat", "the cat on the mat"],
        ["red red red circle"],
    ],
    ["red red red red circle circle", "a a a a", "the the the cat cat", "a red circle"],
)
TEN = (  # 10 images, 1 to 4 references each, words from a small vocabulary so n-grams repeat across images
    [
        ["a red circle", "a red circle on the left"],
        ["a blue square", "a blue square on the right", "one blue square"],
        ["a green triangle above a red circle"],
        ["a red square and a blue circle", "a blue circle and a red square", "two shapes", "a red and a blue shape"],
        ["a big green circle"],
        ["a small green circle", "a green circle that is small"],
        ["a red triangle below a blue square", "a blue square above a red triangle"],
        ["a blue triangle", "a blue triangle on the left", "a triangle"],
        ["a red circle a red circle", "two red circles"],
        ["nothing"],
    ],
    ["a red circle", "a blue square on the left", "a green triangle", "a red square and a blue circle",
     "a green circle", "a green circle", "a blue square above a red triangle on the right", "a blue triangle",
     "a red circle", "a red circle"],
)


@pytest.mark.step("metrics.cider_d")
@pytest.mark.parametrize("corpus", [SHAPES, REPEATS, TEN], ids=["shapes", "repeated-ngrams", "ten-images"])
def test_cider_d_matches_pycocoevalcap(student, corpus):
    references, candidates = corpus
    corpus_score, per_image = student.run(score, references, candidates)
    expected_score, expected_per_image = official(references, candidates)
    assert isinstance(corpus_score, float), f"the corpus score is a float. Received: {corpus_score!r}"
    assert isinstance(per_image, np.ndarray) and per_image.dtype == np.float64, \
        f"per_image is a float64 NumPy array. Received: {per_image!r}"
    assert_close(per_image, expected_per_image, atol=1e-6, rtol=0, what="per-image CIDEr-D",
                 mistakes=mistakes.cider_d(references, candidates),
                 hint="it must equal pycocoevalcap's Cider (the official CIDEr-D code) image by image.")
    assert_close(corpus_score, expected_score, atol=1e-6, rtol=0, what="corpus CIDEr-D",
                 hint="the corpus score is the mean of the per-image scores.")


@pytest.mark.step("metrics.cider_d")
def test_cider_d_by_hand(student):
    """Two images, worked out on paper. N = 2, L = log 2; df: "a" 2, every other n-gram 1.

    Image A, candidate "cat cat" (2 words), references "a cat sat" (3) and "a cat" (2):
      candidate: 1-grams {cat: 2L} (norm 2L); 2-grams {cat cat: L} (in no reference: df 0 -> 1, idf L).
      vs "a cat sat": 1-grams {a: 0, cat: L, sat: L} (norm sqrt(2) L): clipped min(2L, L) * L = L^2,
        sim_1 = L^2 / (2L * sqrt(2) L) = 1 / (2 sqrt 2); sim_2 = 0 ("cat cat" is not there); no 3-, 4-grams: 0.
        length penalty exp(-(2 - 3)^2 / (2 * 36)) = exp(-1/72).
      vs "a cat": 1-grams {a: 0, cat: L} (norm L): sim_1 = L^2 / (2L * L) = 1/2; the rest 0; penalty 1.
      CIDEr-D(A) = 10 / 2 refs * [ (exp(-1/72) / (2 sqrt 2) + 0 + 0 + 0) / 4 + (1/2 + 0 + 0 + 0) / 4 ]
    Image B, candidate "a dog" = its reference: sim_1 = sim_2 = 1, sim_3 = sim_4 = 0: 10 * 2/4 = 5.
    Without clipping sim_1 vs "a cat sat" would be 2L * L / (2L * sqrt(2) L) = 1/sqrt 2.
    """
    references, candidates = [["a cat sat", "a cat"], ["a dog"]], ["cat cat", "a dog"]
    image_a = 10 / 2 * ((math.exp(-1 / 72) / (2 * math.sqrt(2))) / 4 + 0.5 / 4)
    expected = np.array([image_a, 5.0])
    got_score, got_per_image = student.run(score, references, candidates)
    assert_close(got_per_image, expected, atol=1e-9, rtol=0, what="per-image CIDEr-D",
                 mistakes=mistakes.cider_d(references, candidates),
                 hint="clipped counts min(v_c, v_s), norms of the unclipped vectors, length penalty with sigma 6, x10.")
    assert_close(got_score, expected.mean(), atol=1e-9, rtol=0, what="corpus CIDEr-D")


@pytest.mark.step("metrics.cider_d")
def test_one_image_with_corpus_document_frequency(student):
    """Scored alone with the corpus's df, each image gets the score it gets in the corpus (not 0)."""
    references, candidates = TEN
    _, expected = official(references, candidates)
    got = student.run(score_each_against_corpus, references, candidates)
    for i, (image_score, per_image) in enumerate(got):
        assert_close(per_image, expected[i : i + 1], atol=1e-6, rtol=0, what=f"image {i} scored alone",
                     hint="with document_frequency given, df and N are its counts and num_images.")
        assert_close(image_score, expected[i], atol=1e-6, rtol=0, what=f"image {i}'s corpus score")
    assert min(s for s, _ in got[:9]) > 0, "a candidate sharing rare words with its references scores > 0"


def common_and_rare(references, common, rare):
    """Scenario: the per-image scores of two candidate sets over the same references."""
    return cider_d(references, common)[1], cider_d(references, rare)[1]


@pytest.mark.step("metrics.cider_d")
def test_common_words_weigh_less(student):
    """idf: "a" and "of" are in every image's references (idf 0); "red", "blue", "left" in one each."""
    references = [["a red square on top of a circle"], ["a blue circle left of a square"],
                  ["a green ring and a square"], ["a yellow star east of a circle"]]
    common = ["a of a", "a of a", "a and a", "a of a"]  # only the common words, as 3 words
    rare = ["a red square", "a blue circle", "a green ring", "a yellow star"]
    got_common, got_rare = student.run(common_and_rare, references, common, rare)
    assert_close(got_common, official(references, common)[1], atol=1e-6, rtol=0, what="common-word scores")
    assert_close(got_rare, official(references, rare)[1], atol=1e-6, rtol=0, what="rare-word scores")
    assert np.all(np.asarray(got_rare) > np.asarray(got_common) + 1), \
        "an n-gram in every image's references (df = N) has idf log(N / N) = 0: matching it earns nothing."


def score_as(references, candidates, ids):
    """Scenario: the same captions as lists, as dicts {id: ...} (ids in this order), and as token lists."""
    gts = {i: group for i, group in zip(ids, references)}
    res = {i: caption for i, caption in reversed(list(zip(ids, candidates)))}  # another order than gts
    tokens = [[r.split() for r in group] for group in references], [c.split() for c in candidates]
    return cider_d(references, candidates), cider_d(gts, res), cider_d(*tokens)


@pytest.mark.step("metrics.cider_d", kit_code=True)
def test_dicts_and_token_lists_give_the_same(student):
    references, candidates = REPEATS
    as_lists, as_dicts, as_tokens = student.run(score_as, references, candidates, [42, 7, 13, 99])
    for name, got in [("dicts", as_dicts), ("token lists", as_tokens)]:
        assert_close(got[1], as_lists[1], atol=1e-12, rtol=0, what=f"per-image CIDEr-D from {name}",
                     hint="per_image follows the order of the references' ids.")
        assert_close(got[0], as_lists[0], atol=1e-12, rtol=0, what=f"corpus CIDEr-D from {name}")


def score_one_image_alone(references, candidates):
    """Scenario: cider_d on one image without a corpus df, and the warnings it gave."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cider_d(references, candidates)
    return result, [str(w.message) for w in caught]


@pytest.mark.step("metrics.cider_d", kit_code=True)
def test_one_image_alone_scores_0_and_warns(student):
    (image_score, per_image), messages = student.run(score_one_image_alone, [["a red circle"]], ["a red circle"])
    assert image_score == 0.0 and per_image.tolist() == [0.0], "with N = 1 every idf is log(1) - log(1) = 0"
    assert any("DocumentFrequency.from_references" in m for m in messages), messages


def bad_call(references, candidates, df=None):
    """Scenario: cider_d on bad arguments (`df`: None, or a corpus to build a DocumentFrequency from)."""
    return cider_d(references, candidates, None if df is None else DocumentFrequency.from_references(df))


def bad_dicts(references, candidates):
    """Scenario: cider_d on dicts with int ids built from {"id": ...} (the wire carries str keys only)."""
    return cider_d({int(k): v for k, v in references.items()}, {int(k): v for k, v in candidates.items()})


@pytest.mark.step("metrics.cider_d", kit_code=True)
@pytest.mark.parametrize("references, candidates, match", [
    ([["a cat"], ["a dog"]], ["a cat"], r"2 reference lists and 1 candidates"),
    ([], [], r"at least one image"),
    ("a cat", ["a cat"], r"references='a cat'"),
    ([["a cat"], []], ["a cat", "a dog"], r"references\[1\]=\[\]"),
    ([["a cat"], "a dog"], ["a cat", "a dog"], r"references\[1\]='a dog'"),
    ([["a cat"], ["a dog"]], ["a cat", ""], r"candidates\[1\]=''"),
    ([["a cat"], ["a dog"]], ["a cat", "   "], r"candidates\[1\]='   '"),
    ([["a cat"], ["a dog", ""]], ["a cat", "a dog"], r"references\[1\]\[1\]=''"),
    ([["a cat"], ["a dog"]], ["a cat", 7], r"candidates\[1\]=7"),
    ([["a cat"], ["a dog"]], ["a cat", ["a", 3]], r"candidates\[1\]=\['a', 3\]"),
    ([["a cat"], ["a dog"]], ["a cat", ["a dog"]], r"no spaces.*candidates\[1\]=\['a dog'\]"),
    ([["a cat"], ["a dog"]], "a cat", r"candidates='a cat'"),
])
def test_bad_inputs_name_the_argument(student, references, candidates, match):
    with pytest.raises(ValueError, match=match):
        student.run(bad_call, references, candidates)


@pytest.mark.step("metrics.cider_d", kit_code=True)
def test_mismatched_ids_are_named(student):
    with pytest.raises(ValueError, match=r"without a candidate=\[3\], ids without references=\[4\]"):
        student.run(bad_dicts, {"1": ["a cat"], "3": ["a dog"]}, {"1": "a cat", "4": "a dog"})


def bad_document_frequency(counts, num_images):
    """Scenario: a DocumentFrequency built by hand."""
    return DocumentFrequency(counts, num_images)


@pytest.mark.step("metrics.cider_d", kit_code=True)
def test_bad_document_frequency(student):
    with pytest.raises(ValueError, match=r"Received: document_frequency=\{"):
        student.run(score_with_df, [["a cat"]], ["a cat"], {"a": 1})
    with pytest.raises(ValueError, match=r"Received: num_images=0"):
        student.run(bad_document_frequency, {}, 0)
    with pytest.raises(ValueError, match=r"a count of 3 with num_images=2"):
        student.run(bad_document_frequency, {"a": 3}, 2)


def score_with_df(references, candidates, document_frequency):
    """Scenario: cider_d with `document_frequency` as given (not a DocumentFrequency)."""
    return cider_d(references, candidates, document_frequency=document_frequency)
