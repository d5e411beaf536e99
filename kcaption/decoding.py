"""Decoding: turn a captioner's next-word logits into captions.

The loop lives here, once, as in KerasHub's samplers: a decoder takes a
"next logits" callable, not a whole model, so every captioner (RNN, LSTM,
attention, Transformer) shares it, and a test can drive it with a tiny fake
model whose answers are known.

    next_logits(tokens, state) -> (logits, state)
        tokens: int32 (N,), the word fed in at this step;
        state:  whatever the model carries between steps (a list of tensors);
        logits: (N, V), scores of the next word.

Three decoders share it: `greedy_search` (lesson 03), `beam_search` (lesson
07) and `sample_search` (temperature, top-k and top-p sampling: greedy search
over a next_logits that filters the logits and adds Gumbel noise).
"""

import functools
import numbers

import keras  # noqa: F401 (keras.tree, for your beam_search)
import numpy as np
import tensorflow as tf
from keras import ops

from kcaption.steps import graded
from kcaption.validation import check_positive_ints

# Vocabulary conventions (kcaption.data): <NULL>=0 pads, <START>=1, <END>=2.
NULL, START, END = 0, 1, 2


@graded("captioner.sample", lesson="03_rnn", points=3)
def greedy_search(next_logits, state, start_tokens, max_length, end_token=END, pad_token=NULL):
    """Greedy decoding: feed back the most likely word, step by step.

    Algorithm, for t = 0 .. max_length-1:
        logits, state = next_logits(tokens, state)      tokens start as start_tokens
        tokens = argmax(logits)                         (N,)
        a caption that already produced end_token gets pad_token instead
        out[:, t] = tokens
    The end_token itself is kept in the output; everything after it is pad_token.

    Shapes: start_tokens (N,) int; returns int32 (N, max_length).

    Hints:
    - A plain Python `for` loop over `range(max_length)` with `keras.ops` inside:
      `tf.function` traces it once into a compiled graph (so no NumPy, and no
      `.shape[0]`, which is None for a batch size known only at run time).
    - Tools: `ops.argmax`, `ops.where`, `ops.equal`, `ops.logical_or`,
      `ops.zeros_like`, `ops.stack`, `ops.cast` (argmax gives int64; the model
      is fed int32).
    - Keep, per caption, whether it has already emitted end_token: a caption
      keeps its own end_token, and only the steps after it become pad_token.
    """
    raise NotImplementedError(
        "TODO captioner.sample: implement greedy_search in kcaption/decoding.py (lesson 03_rnn)"
    )


def _checks_search_arguments(search):
    """Check `beam_width` and `max_length` before `search` runs (kit code: it runs before yours)."""

    @functools.wraps(search)
    def checked(next_logits, state, start_tokens, beam_width, max_length, *args, **kwargs):
        check_positive_ints(beam_width=beam_width, max_length=max_length)
        return search(next_logits, state, start_tokens, beam_width, max_length, *args, **kwargs)

    return checked


@_checks_search_arguments
@graded("decoding.beam_search", lesson="07_decode_and_evaluate", points=4)
def beam_search(next_logits, state, start_tokens, beam_width, max_length, length_penalty=0.0,
                end_token=END, pad_token=NULL, return_all=False):
    """Beam search: keep the k most likely captions so far, not only the best one.

    Greedy search keeps one caption and may miss the most likely one: a word
    that looks best now can lead to poor words next. Beam search keeps k
    hypotheses ("beams") per image and extends each by every word of the
    vocabulary, then keeps the k best of the k*V candidates.

    Batching: the N images times k beams run as ONE batch of M = N*k rows,
    image-major (rows n*k .. n*k+k-1 are image n's beams), so `next_logits`
    is called once per step, as in greedy search.

    Algorithm:
        tokens = start_tokens repeated k times                        (M,)
        state  = every tensor of the state repeated k times           leading axis M
        scores = [0, -inf, ..., -inf] per image                       (N, k)
                 (at step 0 the k beams are copies: only beam 0 may
                 grow, or the k beams would be the same caption)
        for t = 0 .. max_length-1:
            logits, state = next_logits(tokens, state)                (M, V)
            log_probs = log_softmax(logits in float32)                (M, V)
            a finished beam (it produced end_token) is not extended: its only
            continuation is pad_token, at log-prob 0 (its score stays)
            candidates = scores[:, :, None] + log_probs               (N, k, V) -> (N, k*V)
            scores, index = the k best candidates                     (N, k)
            beam = index // V, word = index % V                       (N, k) each
            reorder everything per beam by `beam` (the state, the words so
            far, which beams are finished, their lengths), then append `word`
        rank the final beams by the length-penalised score (below)

    Length penalty (GNMT, Wu et al. 2016, eq. 14; alpha = `length_penalty`):
        lp(Y) = ((5 + |Y|) / 6) ** alpha
        final score = log P(Y) / lp(Y)
    |Y| is the number of words generated up to and including end_token
    (max_length for a beam that never ended). Log-probabilities are negative
    and shrink with every word, so plain log P prefers short captions; alpha > 0
    divides long captions' scores by more, which favours them (alpha = 0:
    rank by log P). The penalty ranks the final beams only; the search keeps
    the k best by log P at every step. keras_hub's BeamSampler has no length
    penalty (and extends finished beams, see the tests).

    Args:
        next_logits: (tokens (M,), state) -> (logits (M, V), state).
        state: any nested structure (list, dict, ...) of tensors with a
            leading batch axis N: an RNN's [h], the Transformer's KV cache
            whose tensors grow by one position per step.
        start_tokens: int (N,), the first word fed in (<START>).
        beam_width: k >= 1 (k = 1 is greedy search).
        max_length: number of words generated (end_token included).
        length_penalty: alpha of GNMT's penalty.
        end_token, pad_token: ids of <END> and <NULL>.
        return_all: also return every beam and its score.

    Returns:
        int32 (N, max_length): the best caption per image, end_token then
        pad_token after it (as greedy_search). With `return_all`, the pair
        (tokens int32 (N, k, max_length), scores float32 (N, k)), best first;
        the scores are the penalised ones, log P(Y) / lp(Y).

    Hints:
        - A Python `for t in range(max_length)` loop with keras.ops inside (as
          greedy_search): `tf.function` traces it once, and a state whose
          shapes grow each step is fine. The batch size N is
          `ops.shape(start_tokens)[0]`, a tensor when compiled: no `.shape[0]`.
        - `keras.tree.map_structure(fn, state)` applies fn to every tensor of
          a nested state: `ops.repeat(s, k, axis=0)` at the start,
          `ops.take(s, rows, axis=0)` after each step, where
          rows = beam + k * image index (M,) are the parent rows.
        - `ops.top_k(candidates, k)` over the k*V candidates of each image;
          `//` and `%` by V give the beam and the word.
        - Compute `ops.log_softmax` in float32 (logits may be float16 under
          mixed precision); -inf (or a large negative number) marks what
          must never be chosen: beams 1..k-1 at step 0, every word but
          pad_token after end_token.
        - For the final ranking: `ops.argsort` or `ops.top_k` of the
          penalised scores, then `ops.take_along_axis` on (N, k, max_length).
    """
    raise NotImplementedError(
        "TODO decoding.beam_search: implement beam_search in kcaption/decoding.py (lesson 07_decode_and_evaluate)"
    )


def sample_search(next_logits, state, start_tokens, max_length, temperature=1.0, top_k=None, top_p=None,
                  seed=None, end_token=END, pad_token=NULL):
    """Sample captions: temperature, top-k and top-p (nucleus) sampling, seeded.

    A thin layer over `greedy_search`: it decodes through a next_logits that
    divides the logits by the temperature, keeps the top-k words, then the
    top-p nucleus (in that order, as keras_hub's samplers do), and adds Gumbel
    noise. The Gumbel-max trick: if g_1..g_V are independent Gumbel(0, 1)
    draws, g = -log(-log(u)) with u ~ Uniform(0, 1), then
    argmax_i (logits_i + g_i) is a sample of softmax(logits); so the argmax
    that greedy search takes is a sample.

    Args:
        next_logits, state, start_tokens, max_length: as `greedy_search`.
        temperature: > 0; the logits are divided by it. Below 1 sharpens the
            distribution (towards greedy), above 1 flattens it (more diverse).
        top_k: None, or keep only the k most likely words (ties at the k-th
            score are kept too).
        top_p: None, or a float in (0, 1]: keep the smallest set of most
            likely words whose probability reaches p, computed after the
            temperature and on the top-k words renormalised (as Hugging
            Face's TopK then TopP warpers; keras_hub's TopPSampler with `k`
            sums the top-k probabilities without renormalising them, and keeps
            one more word when the mass before it equals p exactly).
        seed: an int, or an int scalar tensor (so that a compiled caller
            does not retrace for every seed); the same seed gives the same
            captions, eager or compiled, on any machine (Philox draws). XLA
            (`jit_compile=True`) draws other numbers from the same seed: the
            same captions from one XLA run to the next, not those of graph
            mode. None draws a fresh seed per call.
        end_token, pad_token: as `greedy_search`.

    Returns:
        int32 (N, max_length), as `greedy_search`.
    """
    if not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"`temperature` must be a number > 0. Received: temperature={temperature!r}")
    if top_k is not None:
        check_positive_ints(top_k=top_k)
    if top_p is not None and (not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1):
        raise ValueError(f"`top_p` must be a number in (0, 1]. Received: top_p={top_p!r}")
    check_positive_ints(max_length=max_length)
    if seed is None:
        seed = tf.random.uniform((), maxval=2**31 - 1, dtype="int64")
    pair = tf.stack([tf.cast(seed, "int64"), tf.constant(0, "int64")])  # a stateless seed

    def noisy_logits(tokens, carried):
        inner, pair = carried
        logits, inner = next_logits(tokens, inner)
        logits = filter_logits(ops.cast(logits, "float32") / temperature, top_k, top_p)
        now, pair = tf.unstack(tf.random.split(pair, 2, alg="philox"))  # this step's seed, the next steps'
        tiny = float(np.finfo("float32").tiny)  # u > 0, so -log(u) < inf and g is finite
        u = tf.random.stateless_uniform(ops.shape(logits), now, minval=tiny, maxval=1.0, alg="philox")
        return logits - ops.log(-ops.log(u)), (inner, pair)

    return greedy_search(noisy_logits, (state, pair), start_tokens, max_length, end_token, pad_token)


def filter_logits(logits, top_k=None, top_p=None):
    """Set to -inf the logits (N, V) outside the top-k words, then outside the top-p nucleus."""
    if top_k is not None:
        vocab_size = logits.shape[-1]
        kth = ops.top_k(logits, top_k if vocab_size is None else min(top_k, vocab_size))[0][:, -1:]
        logits = ops.where(logits >= kth, logits, float("-inf"))
    if top_p is not None and top_p < 1:
        ranked = ops.flip(ops.sort(logits, axis=-1), axis=-1)  # (N, V), best first
        probs = ops.softmax(ranked, axis=-1)
        before = ops.cumsum(probs, axis=-1) - probs  # the mass of the words ranked above each one
        kept = ops.where(before < top_p, ranked, float("inf"))
        lowest = ops.min(kept, axis=-1, keepdims=True)  # the least likely word of the nucleus
        logits = ops.where(logits >= lowest, logits, float("-inf"))
    return logits


def ids_to_text(ids, vocab):
    """Decode a batch of token ids (N, T) into caption strings, stopping at `<END>`."""
    return [vocab.decode(row) for row in ops.convert_to_numpy(ids).tolist()]
