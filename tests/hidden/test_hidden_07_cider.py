"""Hidden tests, lesson 07: CIDEr-D on random corpora, one image, a corpus that is not the scored set.

Scenarios (run the student's code, return plain values) sit right above their tests (the judges).
"""

import numpy as np
import pytest

from kcaption.evaluation.cider import DocumentFrequency, cider_d
from kcaption.testing import assert_close

WORDS = ["a", "red", "blue", "circle", "square", "of", "left", "the"]  # few words: n-grams repeat


def official(references, candidates):
    """pycocoevalcap's `Cider` (the official CIDEr-D code) on str captions: the per-image scores."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: list(group) for i, group in enumerate(references)}
    res = {i: [caption] for i, caption in enumerate(candidates)}
    return np.asarray(Cider().compute_score(gts, res)[1], np.float64)


def random_corpus(seed, num_images, max_refs=4, max_words=9):
    rng = np.random.default_rng(seed)

    def caption():
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, max_words + 1))))

    references = [[caption() for _ in range(int(rng.integers(1, max_refs + 1)))] for _ in range(num_images)]
    return references, [caption() for _ in range(num_images)]


def score(references, candidates):
    """Scenario: cider_d, document frequencies from the references being scored."""
    return cider_d(references, candidates)


def score_subset(references, candidates, corpus, keep):
    """Scenario: the images `keep` scored with the document frequencies of `corpus`."""
    df = DocumentFrequency.from_references(corpus)
    return cider_d([references[i] for i in keep], [candidates[i] for i in keep], document_frequency=df)


@pytest.mark.step("metrics.cider_d")
@pytest.mark.parametrize("seed, num_images", [(0, 2), (1, 3), (2, 7), (3, 12), (4, 25)])
def test_random_corpora_match_pycocoevalcap(student, seed, num_images):
    references, candidates = random_corpus(seed, num_images)
    corpus_score, per_image = student.run(score, references, candidates)
    expected = official(references, candidates)
    assert_close(per_image, expected, atol=1e-6, rtol=0, what="per-image CIDEr-D")
    assert_close(corpus_score, expected.mean(), atol=1e-6, rtol=0, what="corpus CIDEr-D")


@pytest.mark.step("metrics.cider_d")
def test_long_and_one_word_captions(student):
    """One-word captions have no 2- to 4-grams (norms 0); long ones pay the length penalty; duplicate references."""
    references = [["circle"], ["a red circle left of the blue square", "a red circle left of the blue square"],
                  ["square", "a square"], ["the red circle"]]
    candidates = ["circle", "a red circle", "a square " * 7, "red"]
    corpus_score, per_image = student.run(score, references, candidates)
    expected = official(references, candidates)
    assert_close(per_image, expected, atol=1e-6, rtol=0, what="per-image CIDEr-D")
    assert_close(corpus_score, expected.mean(), atol=1e-6, rtol=0, what="corpus CIDEr-D")


@pytest.mark.step("metrics.cider_d")
@pytest.mark.parametrize("keep", [[0], [5], [2, 7, 9]])
def test_images_scored_against_a_larger_corpus(student, keep):
    """df and N from a 12-image corpus, only some images scored: num_images, not the number scored, is N."""
    references, candidates = random_corpus(7, 12)
    image_score, per_image = student.run(score_subset, references, candidates, references, keep)
    expected = official(references, candidates)[keep]
    assert_close(per_image, expected, atol=1e-6, rtol=0, what=f"images {keep} scored with the corpus's df")
    assert_close(image_score, expected.mean(), atol=1e-6, rtol=0, what="their mean")


@pytest.mark.step("metrics.cider_d")
def test_corpus_without_the_scored_references(student):
    """A df corpus that lacks some scored n-grams: they count as df = 1 (idf log N), references' n-grams too."""
    references, candidates = [["a red circle", "red circle"]], ["a red square"]
    corpus = [["a blue square"], ["the circle"], ["a red thing"]]
    _, per_image = student.run(score_subset, references, candidates, corpus, [0])
    # By hand, N = 3, L = log 3; df: a 2, red 1, "a red" 1, blue, square, ... (circle 1, "red circle" 0 -> 1).
    # 1-grams: c = {a: L - log 2, red: L, square: L}; s1 = {a: L - log 2, red: L, circle: L}; s2 = {red: L, circle: L}.
    L, a = np.log(3), np.log(3) - np.log(2)
    norm_c = np.sqrt(a**2 + 2 * L**2)
    sim1_s1 = (a * a + L * L) / (norm_c * norm_c)  # s1 has the same norm as c
    sim1_s2 = (L * L) / (norm_c * np.sqrt(2) * L)
    # 2-grams: c = {a red: L, red square: L}; s1 = {a red: L, red circle: L}; s2 = {red circle: L}.
    sim2_s1, sim2_s2 = 0.5, 0.0
    penalty_s2 = np.exp(-1 / 72)  # 3 words vs 2
    expected = 10 / 2 * ((sim1_s1 + sim2_s1) / 4 + (sim1_s2 + sim2_s2) * penalty_s2 / 4)
    assert_close(per_image, [expected], atol=1e-9, rtol=0, what="CIDEr-D against a corpus without its n-grams")


def candidate_is_a_reference(references):
    """Scenario: each image's candidate is its own first reference; and the same as token lists."""
    candidates = [group[0] for group in references]
    tokens = [[r.split() for r in group] for group in references]
    return cider_d(references, candidates), cider_d(tokens, [group[0] for group in tokens])


@pytest.mark.step("metrics.cider_d")
def test_candidate_equal_to_a_reference(student):
    references, _ = random_corpus(11, 6, max_refs=3)
    (corpus_score, per_image), (token_score, token_per_image) = student.run(candidate_is_a_reference, references)
    expected = official(references, [group[0] for group in references])
    assert_close(per_image, expected, atol=1e-6, rtol=0, what="CIDEr-D of a candidate equal to a reference")
    assert_close(token_per_image, per_image, atol=1e-12, rtol=0, what="the same captions as token lists")
    assert_close(token_score, corpus_score, atol=1e-12, rtol=0, what="the corpus score from token lists")


def one_image(references, candidates, corpus):
    """Scenario: one image scored with a corpus's df (N = 1 is the known pitfall)."""
    return cider_d(references, candidates, document_frequency=DocumentFrequency.from_references(corpus))


@pytest.mark.step("metrics.cider_d")
def test_one_image_with_a_corpus_is_positive(student):
    references, candidates = random_corpus(5, 9)
    for i in (0, 8):
        image_score, per_image = student.run(one_image, [references[i]], [references[i][0]], references)
        assert per_image.shape == (1,) and image_score > 0, (image_score, per_image)
