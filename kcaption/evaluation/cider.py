"""CIDEr-D (Vedantam et al., 2015): how well a caption agrees with the consensus of its references.

Each caption becomes tf-idf vectors of its 1- to 4-grams: an n-gram counts for
more the more often the caption says it (tf), and for less the more images'
references say it (idf), so "a" and "of", in nearly every image's references,
weigh almost nothing. A candidate scores the cosine-like similarity of its
vectors with each reference's, with clipped counts and a length penalty (the
"-D" of CIDEr-D: saying a word twice, or padding a caption, earns nothing).

`cider_d` is the graded step; it gives what pycocoevalcap's `Cider` gives (the
official coco-caption code, which computes CIDEr-D). `DocumentFrequency` holds
a reference corpus's document frequencies, for scoring a few images (even one)
against the statistics of a whole test set.
"""

import dataclasses
import functools
import warnings
from collections import Counter

from kcaption.errors import KcaptionWarning
from kcaption.steps import graded

MAX_N = 4  # n-grams of 1 to 4 words
SIGMA = 6.0  # the standard deviation of the Gaussian length penalty, in words


@dataclasses.dataclass(frozen=True)
class DocumentFrequency:
    """Document frequencies of a reference corpus, for `cider_d(..., document_frequency=...)`.

    Args:
        counts: {n-gram (a tuple of 1 to 4 words): the number of images whose
            references contain it at least once}.
        num_images: the number of images of the corpus (N in idf = log(N / df)).

    Example:
        >>> df = DocumentFrequency.from_references(test_references)
        >>> score, _ = cider_d(test_references[:1], candidates[:1], document_frequency=df)
    """

    counts: dict
    num_images: int

    def __post_init__(self):
        if not isinstance(self.num_images, int) or self.num_images < 1:
            raise ValueError(
                f"DocumentFrequency needs num_images >= 1. Received: num_images={self.num_images!r}"
            )
        most = max(self.counts.values(), default=0)
        if most > self.num_images:
            raise ValueError(
                "DocumentFrequency: an n-gram cannot be in more images than the corpus has. "
                f"Received: a count of {most} with num_images={self.num_images}"
            )

    @classmethod
    def from_references(cls, references):
        """The document frequencies of `references` (one list of captions per image, or a dict of them)."""
        groups, _ = _check_references(references)
        counts = Counter()
        for group in groups:
            counts.update({gram for tokens in group for gram in _ngrams(tokens)})  # once per image
        return cls(dict(counts), len(groups))


def _ngrams(tokens):
    return [tuple(tokens[i : i + n]) for n in range(1, MAX_N + 1) for i in range(len(tokens) - n + 1)]


def _tokens(caption, where):
    """A caption as a list of words: a str lower-cased and split on whitespace, a list of str as it is."""
    if isinstance(caption, str):
        tokens = caption.lower().split()
    elif isinstance(caption, (list, tuple)) and all(isinstance(t, str) for t in caption):
        if any(not t or t != "".join(t.split()) for t in caption):
            raise ValueError(
                f"cider_d: a caption given as a list of tokens has one word per token (no empty "
                f"token, no spaces; pass a str to have it split). Received: {where}={caption!r}"
            )
        tokens = list(caption)
    else:
        raise ValueError(f"cider_d: a caption is a str or a list of str tokens. Received: {where}={caption!r}")
    if not tokens:
        raise ValueError(f"cider_d: a caption has at least one word. Received: {where}={caption!r}")
    return tokens


def _check_references(references):
    """(one list of token lists per image, the image ids or None) from a list or a dict of reference lists."""
    if isinstance(references, dict):
        ids, groups = list(references), list(references.values())
        where = [f"references[{i!r}]" for i in ids]
    elif isinstance(references, (list, tuple)):
        ids, groups = None, list(references)
        where = [f"references[{k}]" for k in range(len(groups))]
    else:
        raise ValueError(
            f"cider_d: references is a list or a dict of lists of captions. Received: references={references!r}"
        )
    if not groups:
        raise ValueError(f"cider_d needs at least one image. Received: references={references!r}")
    checked = []
    for group, at in zip(groups, where):
        if not isinstance(group, (list, tuple)) or not group:
            raise ValueError(f"cider_d needs a non-empty list of reference captions per image. Received: {at}={group!r}")
        checked.append([_tokens(r, f"{at}[{j}]") for j, r in enumerate(group)])
    return checked, ids


def _check_inputs(references, candidates):
    """The captions as token lists, in the references' order; ValueError naming what is wrong."""
    groups, ids = _check_references(references)
    if ids is not None:
        if not isinstance(candidates, dict):
            raise ValueError(
                "cider_d: references given as a dict {image_id: [captions]} need candidates as a dict "
                f"{{image_id: caption}}. Received: candidates of type {type(candidates).__name__}"
            )
        missing = [i for i in ids if i not in candidates]
        extra = [i for i in candidates if i not in references]
        if missing or extra:
            raise ValueError(
                "cider_d needs the same image ids in references and candidates. Received: ids without "
                f"a candidate={missing!r}, ids without references={extra!r}"
            )
        return groups, [_tokens(candidates[i], f"candidates[{i!r}]") for i in ids]
    if not isinstance(candidates, (list, tuple)):
        raise ValueError(f"cider_d: candidates is a list of captions (one per image). Received: candidates={candidates!r}")
    if len(candidates) != len(groups):
        raise ValueError(
            "cider_d needs one candidate per image, as many as the lists of references. "
            f"Received: {len(groups)} reference lists and {len(candidates)} candidates"
        )
    return groups, [_tokens(c, f"candidates[{k}]") for k, c in enumerate(candidates)]


def _checked(step):
    """Check and tokenize `cider_d`'s arguments (kit code) before the step's own body runs."""

    @functools.wraps(step)
    def cider_d(references, candidates, document_frequency=None):
        references, candidates = _check_inputs(references, candidates)
        if document_frequency is not None and not isinstance(document_frequency, DocumentFrequency):
            raise ValueError(
                "cider_d: document_frequency is None or a DocumentFrequency (see "
                f"DocumentFrequency.from_references). Received: document_frequency={document_frequency!r}"
            )
        if document_frequency is None and len(references) == 1:
            warnings.warn(
                "cider_d scores one image with document frequencies from its own references: every "
                "idf is log(1/1) = 0, so CIDEr-D is 0. Pass document_frequency="
                "DocumentFrequency.from_references(corpus) to score it against a corpus.",
                KcaptionWarning,
                stacklevel=2,
            )
        return step(references, candidates, document_frequency)

    return cider_d


@_checked
@graded("metrics.cider_d", lesson="07_decode_and_evaluate", points=3)
def cider_d(references, candidates, document_frequency=None):
    """CIDEr-D of candidate captions against their references: the corpus score and one score per image.

    The kit checks the arguments first (a `ValueError` names what is wrong) and
    hands your code every caption as a list of words: `references[i][j]` is
    reference j of image i, `candidates[i]` the caption to score for image i,
    each a non-empty list of str (a str caption is lower-cased and split on
    whitespace; dicts {image_id: ...} become lists in the references' order).

    Math, for N images; g_n(x) is the Counter of the n-grams of caption x
    (tuples of n consecutive words), n = 1..4:

        df(w)   = the number of images whose references (any of them) contain w
        idf(w)  = log(N) - log(max(1, df(w)))       (an n-gram no reference has: df 0 -> 1)
        v_n(x)  = {w: g_n(x)[w] * idf(w)}           the tf-idf vector of x, for each n
        sim_n(c, s) = sum_w min(v_n(c)[w], v_n(s)[w]) * v_n(s)[w] / (|v_n(c)| * |v_n(s)|)
                      (0 when either norm is 0; the norms are of the unclipped vectors)
        penalty(c, s) = exp(-(len(c) - len(s))**2 / (2 * sigma**2)),  sigma = 6, len in words
        CIDEr-D(c, [s_1..s_m]) = 10 / m * sum_j mean_n( sim_n(c, s_j) * penalty(c, s_j) )

    With `document_frequency` given, df and N are its `counts` and `num_images`
    instead: the statistics of a reference corpus, so that scoring a single image
    does not give 0 (with N = 1 every idf is log(1) - log(1) = 0).

    Worked example (N = 2: "a" is in both images' references, so idf("a") = 0;
    every other n-gram has idf log 2):

        >>> cider_d([["a cat"], ["a dog"]], ["a cat", "a cat"])
        (2.5, array([5., 0.]))

    Image 0 matches its reference: sim_1 = sim_2 = 1, but a 2-word caption has
    no 3- or 4-grams (sim_3 = sim_4 = 0), so 10 * mean(1, 1, 0, 0) = 5. Image 1
    shares only "a", which weighs 0: 0.

    Args:
        references: one list of reference captions per image, or a dict
            {image_id: [captions]} (pycocoevalcap's `gts`). A caption is a str or
            a list of str tokens.
        candidates: one caption per image, same order, or a dict {image_id:
            caption} with the same ids.
        document_frequency: None (df from `references`, as the official code), or
            a `DocumentFrequency` (`DocumentFrequency.from_references(corpus)`).

    Returns:
        (score, per_image): the corpus CIDEr-D (float, the mean of per_image) and a
        float64 NumPy array (N,) of each image's CIDEr-D, in the references' order.

    Hints:
    - `collections.Counter` counts n-grams: `Counter(tuple(words[i:i + n]) for i in ...)`.
      Count df over the *set* of n-grams of an image's references: once per image.
    - Keep one dict {n-gram: weight} per n (and its norm) per caption; `math.log`, `math.exp`.
    - Clip: a word the candidate says twice matches at most what the reference
      has, min(v_c, v_s), and the norms stay those of the unclipped vectors.
    - Average over the 4 n-gram sizes, then over the references; times 10.
    - pycocoevalcap's `Cider().compute_score(gts, res)` (gts {id: [str]}, res
      {id: [str]}) is the official code: compare with it.

    References:
        Vedantam, Zitnick, Parikh, "CIDEr: Consensus-based Image Description
        Evaluation", CVPR 2015; pycocoevalcap/cider/cider_scorer.py (`CiderScorer`).
    """
    raise NotImplementedError(
        "TODO metrics.cider_d: implement cider_d in kcaption/evaluation/cider.py (lesson 07_decode_and_evaluate)"
    )
