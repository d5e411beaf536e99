"""Known mistakes of each graded step, and what each one outputs.

Each function takes the inputs of a check and returns a dict: hint -> the
output that mistake gives on those inputs (NumPy, float64), or a test
`value -> bool` that recognises it. A check passes it as `mistakes=` to
`kcaption.testing.assert_close` / `check`, which shows the hint of the mistake
that matches what came out (see `kcaption.feedback`). The public tests and the
lessons' check cells use the same functions, so both show the same hint.

Each model is the step's math in NumPy with one thing wrong (the public tests
hold the same math in NumPy; no reference body of a step is here). A mistake
that gives the right answer on some inputs is never shown for them.
"""

from collections import Counter

import numpy as np

NULL, START, END = 0, 1, 2  # kcaption.data.vocab's ids; importing it would import TensorFlow (the data package)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z, axis):
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _log_softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _f64(*values):
    return [np.asarray(v, np.float64) for v in values]


# --- data.decode_captions ------------------------------------------------------------


def decode_captions(ids, words):
    """Mistakes of `decode_captions(ids, vocab)` (`words` = vocab.words): tests of the value that came out."""
    ids = np.asarray(ids)
    rows = (ids[None] if ids.ndim == 1 else ids).tolist()

    def captions(got):
        return [got] if isinstance(got, str) else list(got)

    def keeps(token):
        return lambda got: any(isinstance(c, str) and token in c.split() for c in captions(got))

    def reads_past_end(got):
        for row, caption in zip(rows, captions(got)):
            if END not in row or not isinstance(caption, str):
                continue
            cut = row.index(END)
            tail = [words[i] for i in row[cut + 1:] if i not in (NULL, START, END)]
            before = [i for i in row[:cut] if i not in (NULL, START)]
            if tail and len(caption.split()) > len(before) and caption.split()[-len(tail):] == tail:
                return True
        return False

    return {
        "'<START>' is in a caption: <START> (id 1) is skipped wherever it is, it is not a word.": keeps("<START>"),
        "'<END>' is in a caption: <END> (id 2) ends the caption but is not part of it.": keeps("<END>"),
        "'<NULL>' is in a caption: <NULL> (id 0) is padding, skipped wherever it is.": keeps("<NULL>"),
        "a caption goes on with the words after its <END>: does reading stop at the first <END>?": reads_past_end,
        "(T,) ids gave a list: one row of ids gives one str.": lambda got: ids.ndim == 1 and not isinstance(got, str),
        "(N, T) ids gave a single str: N rows give a list of N captions.":
            lambda got: ids.ndim == 2 and isinstance(got, str),
        "a caption is a list of words: join them with single spaces.":
            lambda got: any(isinstance(c, (list, tuple)) for c in captions(got)),
    }


# --- embedding.forward ---------------------------------------------------------------


def embedding_forward(W_embed, ids):
    """Mistakes of `WordEmbedding.call`: W_embed (V, D), ids (any shape) -> out (*ids.shape, D)."""
    W, ids = np.asarray(W_embed), np.asarray(ids).astype(np.int64)
    V, D = W.shape
    mistakes = {
        "each id k got row k-1 of W_embed: are the ids off by one?": W[ids - 1],
        f"every row is sqrt(D) = {D**0.5:.4g} times the stored one: this layer returns the rows as they are "
        "(a Transformer scales them elsewhere).": W[ids] * D**0.5,
        "one number per id, not a row of D: the gather read W_embed flattened. Along which axis are its rows?":
            W.ravel()[ids],
        "each id gave a vector of V numbers, not D: a column of W_embed instead of a row (transposed)?":
            lambda out: V != D and np.shape(out) == (*ids.shape, V),
    }
    if W.dtype == np.float64:
        mistakes["the rows lost their last digits: a round trip through float32?"] = \
            W.astype(np.float32).astype(np.float64)[ids]
    return mistakes


# --- loss.temporal_softmax -----------------------------------------------------------


def temporal_softmax_loss(logits, targets, ignore_index=0):
    """Mistakes of `temporal_softmax_loss`: logits (N, T, V), targets (N, T) -> a scalar."""
    (z,), targets = _f64(logits), np.asarray(targets).astype(np.int64)
    N = len(targets)
    counted = targets != ignore_index

    def picked(axis):
        return np.take_along_axis(_log_softmax(z, axis), targets[..., None], axis=-1)[..., 0]  # (N, T)

    over_time = picked(axis=1)
    kept = picked(axis=-1) * counted  # masked log-probabilities, the pieces every mistake below reuses
    return {
        "targets equal to ignore_index (<NULL>) are counted: is the mask applied?": -picked(axis=-1).sum() / N,
        "divided by the number of counted tokens: the loss divides by N, the batch size.":
            -kept.sum() / max(counted.sum(), 1),
        "averaged over all N*T positions: the loss sums over time and averages over the batch only.": -kept.mean(),
        "not divided by N: the loss averages over the batch.": -kept.sum(),
        "softmax over the time axis, not over the vocabulary (the last axis)?": -(over_time * counted).sum() / N,
        "the sign is flipped: the loss is -log p, a positive number.": kept.sum() / N,
    }


# --- rnn.cell ------------------------------------------------------------------------


def rnn_cell(x, h_prev, Wx, Wh, b, output="h"):
    """Mistakes of `RNNCell.call`: x (N, D), h_prev (N, H) -> h (N, H) (`output="h"`) or the next state."""
    x, h_prev, Wx, Wh, b = _f64(x, h_prev, Wx, Wh, b)
    from_x, from_h = x @ Wx, h_prev @ Wh
    mistakes = {
        "no bias: is b added?": np.tanh(from_x + from_h),
        "sigmoid where the RNN takes tanh?": _sigmoid(from_x + from_h + b),
        "no tanh: the pre-activation came back as it is?": from_x + from_h + b,
        "h_prev is ignored: is h_prev Wh added?": np.tanh(from_x + b),
        "x is ignored: is x Wx added?": np.tanh(from_h + b),
        "h_prev times Wh transposed?": np.tanh(from_x + h_prev @ Wh.T + b),
    }
    if output == "state":
        mistakes["the next state is h_prev, the old state: the new h is the next state."] = h_prev
    return mistakes


# --- lstm.cell -----------------------------------------------------------------------


def _lstm_step(x, h_prev, c_prev, z, order, g_activation, forget, input_gate, cell_tanh):
    """One LSTM step from its pre-activations z (N, 4H) read in gate `order`, with the given choices."""
    H = h_prev.shape[1]
    blocks = dict(zip(order, np.split(z, 4, axis=-1)))
    i, f, g, o = _sigmoid(blocks["i"]), _sigmoid(blocks["f"]), g_activation(blocks["g"]), _sigmoid(blocks["o"])
    c = (f * c_prev if forget else np.zeros((len(x), H))) + (i * g if input_gate else g)
    return o * (np.tanh(c) if cell_tanh else c), c


_LSTM_MISTAKES = {
    "gates read in the order i, f, o, g (older course notes)? Keras's order is i, f, g, o.": dict(order="ifog"),
    "gates read in the order f, i, g, o: input and forget gates swapped?": dict(order="figo"),
    "sigmoid on the candidate g? g takes tanh.": dict(g_activation=_sigmoid),
    "c_prev is forgotten: c = i * g, without f * c_prev?": dict(forget=False),
    "no input gate: c = f * c_prev + g, without i * g?": dict(input_gate=False),
    "h = o * c: is the tanh of c missing?": dict(cell_tanh=False),
}


def _lstm_choices(**mistake):
    return {"order": "ifgo", "g_activation": np.tanh, "forget": True, "input_gate": True, "cell_tanh": True,
            **mistake}


def lstm_cell(x, h_prev, c_prev, Wx, Wh, b, output="h"):
    """Mistakes of `LSTMCell.call`: x (N, D), h_prev, c_prev (N, H) -> h (`output="h"`) or c (N, H)."""
    x, h_prev, c_prev, Wx, Wh, b = _f64(x, h_prev, c_prev, Wx, Wh, b)
    z = x @ Wx + h_prev @ Wh
    pick = 0 if output == "h" else 1
    mistakes = {hint: _lstm_step(x, h_prev, c_prev, z + b, **_lstm_choices(**choice))[pick]
                for hint, choice in _LSTM_MISTAKES.items() if output == "h" or "cell_tanh" not in choice}
    mistakes["no bias: is b added?"] = _lstm_step(x, h_prev, c_prev, z, **_lstm_choices())[pick]
    return mistakes


# --- attention.dot_product -----------------------------------------------------------


def _attend(query, A, scale, axis):
    """(context, weights) of scores A . query / scale, softmaxed over `axis`."""
    weights = _softmax(np.einsum("nlh,nh->nl", A, query) / scale, axis=axis)
    return np.einsum("nl,nlh->nh", weights, A), weights


def dot_product_attention(h_prev, A, output="weights"):
    """Mistakes of `dot_product_attention`: h_prev (N, H), A (N, L, H) -> context (N, H) or weights (N, L)."""
    h_prev, A = _f64(h_prev, A)
    H = A.shape[-1]
    scores = np.einsum("nlh,nh->nl", A, h_prev) / np.sqrt(H)
    pick = 0 if output == "context" else 1
    mistakes = {
        "the scores are not scaled: divided by sqrt(H)?": _attend(h_prev, A, 1.0, -1)[pick],
        "the scores are divided by H, not sqrt(H)?": _attend(h_prev, A, H, -1)[pick],
        "softmax over the batch axis, not over the L positions?": _attend(h_prev, A, np.sqrt(H), 0)[pick],
        "no softmax: the scaled scores came back as the weights?":
            (np.einsum("nl,nlh->nh", scores, A), scores)[pick],
    }
    if output == "context":
        mistakes["the context is the plain mean of A: are the weights used?"] = A.mean(axis=1)
    return mistakes


# --- attention.lstm_cell -------------------------------------------------------------


def attention_lstm_cell(x, h_prev, c_prev, A, Wx, Wh, Wattn, b, output="h"):
    """Mistakes of `AttentionLSTMCell.call`: x (N, D), h_prev, c_prev (N, H), A (N, L, H) -> h or c (N, H)."""
    x, h_prev, c_prev, A, Wx, Wh, Wattn, b = _f64(x, h_prev, c_prev, A, Wx, Wh, Wattn, b)
    sqrt_H = np.sqrt(h_prev.shape[1])
    pick = 0 if output == "h" else 1

    def step(query=h_prev, scale=sqrt_H, with_context=True, **choice):
        context = _attend(query, A, scale, -1)[0]
        z = x @ Wx + h_prev @ Wh + (context @ Wattn if with_context else 0) + b
        return _lstm_step(x, h_prev, c_prev, z, **_lstm_choices(**choice))[pick]

    mistakes = {hint: step(**choice) for hint, choice in _LSTM_MISTAKES.items()
                if output == "h" or "cell_tanh" not in choice}
    mistakes.update({
        "the context term is missing: is context Wattn added?": step(with_context=False),
        "attended with c_prev: the query is the previous hidden state h_prev.": step(query=c_prev),
        "the attention scores are not scaled by 1/sqrt(H)?": step(scale=1.0),
    })
    return mistakes


# --- transformer.positional_encoding -------------------------------------------------


def _encoding(T, D, first, exponent, even, odd):
    t = np.arange(first, first + T, dtype=np.float64)[:, None]  # (T, 1)
    angle = t * 10000.0 ** -exponent(np.arange(D))[None, :]  # (T, D)
    return np.where(np.arange(D) % 2 == 0, even(angle), odd(angle))


def positional_encoding(inputs):
    """Mistakes of `PositionalEncoding.call` at inference: inputs (N, T, D) -> inputs + PE (N, T, D)."""
    (x,) = _f64(inputs)
    T, D = x.shape[1:]

    def shared(j):
        return 2 * (j // 2) / D

    return {
        "sine and cosine swapped: sin on the even dimensions, cos on the odd ones?":
            x + _encoding(T, D, 0, shared, np.cos, np.sin),
        "frequency exponent j/D: dimensions 2k and 2k+1 share one frequency, exponent 2*(j//2)/D.":
            x + _encoding(T, D, 0, lambda j: j / D, np.sin, np.cos),
        "frequency exponent 2j/D: dimensions 2k and 2k+1 share one frequency, exponent 2*(j//2)/D.":
            x + _encoding(T, D, 0, lambda j: 2 * j / D, np.sin, np.cos),
        "positions counted from 1: the first position is t = 0.": x + _encoding(T, D, 1, shared, np.sin, np.cos),
        "sin on every dimension: the odd ones take cos.": x + _encoding(T, D, 0, shared, np.sin, np.sin),
        "the inputs came back unchanged: is PE added?": x,
    }


# --- transformer.causal_mask ---------------------------------------------------------


def causal_mask(length):
    """Mistakes of `causal_mask(T)`: a (T, T) boolean mask, row t the query, column s the key."""
    ones = np.ones((length, length), bool)
    return {
        "the diagonal is False: a word may attend to itself (s <= t, not s < t).": np.tril(ones, -1),
        "True on and above the diagonal: transposed? Row t is the query; it sees the keys s <= t.": np.triu(ones),
        "each word also sees the next one: off by one?": np.tril(ones, 1),
        "True exactly where attending is forbidden: the mask is inverted?": np.triu(ones, 1),
        "everything is True: nothing is masked.": ones,
    }


# --- transformer.multi_head_attention ------------------------------------------------


def _multi_head(query, key, value, weights, mask, heads, scale, axis, mask_scores, mask_weights, split):
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = weights
    N, T, E = query.shape[0], query.shape[1], Wq.shape[1]
    d = E // heads

    def per_head(x, W, b):  # (N, T|S, E) -> (N, heads, T|S, d)
        y = x @ W + b
        if split == "straight":
            return y.reshape(N, heads, -1, d)
        return y.reshape(N, -1, heads, d).transpose(0, 2, 1, 3)

    Q, K, V = per_head(query, Wq, bq), per_head(key, Wk, bk), per_head(value, Wv, bv)
    scores = Q @ K.transpose(0, 1, 3, 2) / scale  # (N, heads, T, S)
    if mask is not None:
        mask = np.asarray(mask, bool)[..., None, :, :]  # (N|1, 1, T, S)
        if mask_scores:
            scores = np.where(mask, scores, -1e9)
    attention = _softmax(scores, axis)
    if mask is not None and mask_weights:
        attention = np.where(mask, attention, 0.0)
    heads_out = attention @ V  # (N, heads, T, d)
    if split != "straight":
        heads_out = heads_out.transpose(0, 2, 1, 3)  # (N, T, heads, d)
    out = heads_out.reshape(N, T, E) @ Wo + bo
    return out, attention


def multi_head_attention(query, value, weights, num_heads, key=None, attention_mask=None, output="output"):
    """Mistakes of `MultiHeadAttention.call` (no dropout): -> output (N, T, E) or weights (N, heads, T, S).

    `weights` are the layer's [Wq, bq, Wk, bk, Wv, bv, Wo, bo].
    """
    query, value = _f64(query, value)
    key = value if key is None else np.asarray(key, np.float64)
    weights = _f64(*weights)
    E = weights[0].shape[1]
    sqrt_d = np.sqrt(E // num_heads)
    pick = 0 if output == "output" else 1

    def run(scale=sqrt_d, axis=-1, mask_scores=True, mask_weights=True, split="per position"):
        return _multi_head(query, key, value, weights, attention_mask, num_heads, scale, axis, mask_scores,
                           mask_weights, split)[pick]

    mistakes = {
        "the scores are not scaled: divided by sqrt(d), d = E / num_heads?": run(scale=1.0),
        "the scores are divided by sqrt(E), the model width: each head scales by sqrt(d), its own width.":
            run(scale=np.sqrt(E)),
        "softmax over the queries (axis -2), not over the keys (the last axis)?": run(axis=-2),
        "heads split by reshaping (N, T, E) straight to (N, heads, T, d)? That mixes positions and dimensions.":
            run(split="straight"),
    }
    if attention_mask is not None:
        mistakes["the mask is ignored?"] = run(mask_scores=False, mask_weights=False)
        mistakes["masked only after the softmax: the masked scores must be -1e9 before it, so each row "
                 "renormalises over the keys it may see."] = run(mask_scores=False)
    return mistakes


# --- metrics.cider_d -----------------------------------------------------------------


def _cider(references, candidates, clip=True, penalty_denominator=2 * 6.0**2, times=10.0, n_mean=True,
           ref_mean=True, df_from="references", df_per_image=True, log_df=lambda df: np.log(max(1.0, df))):
    """CIDEr-D's per-image scores, each argument one choice of the math (the defaults are right)."""
    references = [[r.lower().split() for r in group] for group in references]
    candidates = [c.lower().split() for c in candidates]

    def grams(words):
        return Counter(tuple(words[i : i + n]) for n in range(1, 5) for i in range(len(words) - n + 1))

    df = Counter()
    for group in [[c] for c in candidates] if df_from == "candidates" else references:
        found = [g for words in group for g in grams(words)]  # once per reference
        df.update(set(found) if df_per_image else found)
    log_n = np.log(len(references))

    def vectors(words):
        vecs = [{} for _ in range(4)]
        for g, tf in grams(words).items():
            vecs[len(g) - 1][g] = tf * (log_n - log_df(df[g]))
        return vecs, [np.sqrt(sum(w * w for w in v.values())) for v in vecs]

    scores = []
    for group, words in zip(references, candidates):
        vec_c, norm_c = vectors(words)
        total = 0.0
        for ref in group:
            vec_s, norm_s = vectors(ref)
            penalty = np.exp(-((len(words) - len(ref)) ** 2) / penalty_denominator) if penalty_denominator else 1.0
            for n in range(4):
                if norm_c[n] > 0 and norm_s[n] > 0:
                    dot = sum((min(w, vec_s[n].get(g, 0.0)) if clip else w) * vec_s[n].get(g, 0.0)
                              for g, w in vec_c[n].items())
                    total += dot / (norm_c[n] * norm_s[n]) * penalty
        scores.append(times * total / (4 if n_mean else 1) / (len(group) if ref_mean else 1))
    return np.array(scores)


def cider_d(references, candidates):
    """Mistakes of `cider_d` (df from the references scored): str captions -> per-image scores (N,)."""
    mistakes = {
        "counts are not clipped: a word the candidate says more often than the reference matches at most "
        "min(v_c, v_s).": _cider(references, candidates, clip=False),
        "no length penalty: each reference's similarity is times exp(-(len(c) - len(s))**2 / (2 sigma**2)).":
            _cider(references, candidates, penalty_denominator=None),
        "the length penalty divides by 2 sigma, not 2 sigma**2 (sigma = 6).":
            _cider(references, candidates, penalty_denominator=2 * 6.0),
        "10 times too small: CIDEr-D is 10 times the mean similarity.": _cider(references, candidates, times=1.0),
        "summed over n = 1..4: average over the 4 n-gram sizes.": _cider(references, candidates, n_mean=False),
        "summed over the references: average over them.": _cider(references, candidates, ref_mean=False),
        "document frequencies counted over the candidates: df(w) counts the images whose references contain w.":
            _cider(references, candidates, df_from="candidates"),
        "df counts each reference that has the n-gram: count each image once (the set of its references' "
        "n-grams).":
            _cider(references, candidates, df_per_image=False),
        "idf with log(df + 1): the official code takes log(max(1, df)).":
            _cider(references, candidates, log_df=lambda df: np.log(df + 1.0)),
    }
    return mistakes


# --- decoding.beam_search ------------------------------------------------------------


def _beam(next_logits, start, k, max_length, alpha, copies=False, extend_finished=False, raw=False,
          penalise=True, full_length=False, end_counted=True):
    """A NumPy beam search over Python lists with the chosen mistakes; the best caption's words."""
    beams = [((), 0.0)] * (k if copies else 1)
    for _ in range(max_length):
        candidates = []
        for words, score in beams:
            if END in words and not extend_finished:
                candidates.append((words + (NULL,), score))
                continue
            logits = np.asarray(next_logits([start, *words]), np.float64)
            step = logits if raw else _log_softmax(logits, axis=-1)
            candidates += [(words + (w,), score + step[w]) for w in range(len(step))]
        beams = sorted(candidates, key=lambda c: -c[1])[:k]

    def final(words, score):
        length = max_length if full_length or END not in words else words.index(END) + end_counted
        return score / ((5 + length) / 6) ** alpha if penalise else score

    return list(max(beams, key=lambda c: final(*c))[0])


def beam_search(next_logits, start_tokens, beam_width, max_length, length_penalty=0.0):
    """Mistakes of `beam_search`: the best captions (N, max_length) each gives.

    `next_logits(fed)` is the model in NumPy: the logits (V,) of the next word after the words fed so far
    ([start, y_0, ..., y_t-1]).
    """
    def best(**mistake):
        return np.array([_beam(next_logits, int(s), beam_width, max_length, length_penalty, **mistake)
                         for s in np.asarray(start_tokens)])

    return {
        "the k beams start as copies: at step 0 only beam 0 may grow (the others start at -inf), or the k best "
        "candidates are the same caption k times.": best(copies=True),
        "finished beams are extended: after <END> a beam's only continuation is <NULL>, at log-prob 0.":
            best(extend_finished=True),
        "the scores sum raw logits: sum log_softmax(logits), the log-probabilities.": best(raw=True),
        "the final ranking ignores the length penalty: rank by log P(Y) / ((5 + |Y|) / 6) ** alpha.":
            best(penalise=False),
        "the length penalty counts max_length words for every beam: |Y| stops at <END> (included).":
            best(full_length=True),
        "the length penalty does not count <END>: |Y| is the words up to and including it.":
            best(end_counted=False),
    }


# --- lesson 08: backprop -------------------------------------------------------------


def _affine_backward(dz, x, prev_h, Wx, Wh):
    """The gradients of z = x Wx + prev_h Wh + b, from dz: shared by the RNN and LSTM steps."""
    return {"dx": dz @ Wx.T, "dprev_h": dz @ Wh.T, "dWx": x.T @ dz, "dWh": prev_h.T @ dz, "db": dz.sum(axis=0)}


_TANH_GRAD_MISTAKES = {
    "tanh' is missing: dz = dnext_h * tanh'(z), with tanh'(z) = 1 - next_h**2?": lambda h: np.ones_like(h),
    "tanh' taken of next_h: next_h is already tanh(z), so tanh'(z) = 1 - next_h**2, not 1 - tanh(next_h)**2.":
        lambda h: 1 - np.tanh(h) ** 2,
    "tanh'(z) written as 1 - next_h: it is 1 - next_h**2.": lambda h: 1 - h,
}


def _rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh, tanh_grad=lambda h: 1 - h**2):
    return _affine_backward(dnext_h * tanh_grad(next_h), x, prev_h, Wx, Wh)


def rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh, output):
    """Mistakes of `rnn_step_backward`; `output` names the gradient: "dx", "dprev_h", "dWx", "dWh" or "db"."""
    args = _f64(dnext_h, x, prev_h, next_h, Wx, Wh)
    mistakes = {hint: _rnn_step_backward(*args, tanh_grad=grad)[output] for hint, grad in _TANH_GRAD_MISTAKES.items()}
    if output == "db":
        dz = args[0] * (1 - args[3] ** 2)
        mistakes["db averaged over the batch: b is added to every row, so db is the sum over the N rows."] = \
            dz.mean(axis=0)
    return mistakes


def _bptt(dh, x, h0, h, Wx, Wh, tanh_grad=lambda h: 1 - h**2, accumulate=True, carry=True, backwards=True,
          prev_is_h_t=False):
    """NumPy backpropagation through time with the chosen mistakes: dx, dh0, dWx, dWh, db."""
    T = x.shape[1]
    dx, dprev = np.zeros_like(x), np.zeros_like(h0)
    totals = {"dWx": np.zeros_like(Wx), "dWh": np.zeros_like(Wh), "db": np.zeros(Wh.shape[1])}
    for t in reversed(range(T)) if backwards else range(T):
        prev_h = h[:, t] if prev_is_h_t else (h0 if t == 0 else h[:, t - 1])
        step = _rnn_step_backward(dh[:, t] + (dprev if carry else 0), x[:, t], prev_h, h[:, t], Wx, Wh, tanh_grad)
        dx[:, t], dprev = step["dx"], step["dprev_h"]
        for name in totals:
            totals[name] = totals[name] + step[name] if accumulate else step[name]
    return {"dx": dx, "dh0": dprev, **totals}


def rnn_backward(dh, x, h0, h, Wx, Wh, output):
    """Mistakes of `rnn_backward`; `output` names the gradient: "dx", "dh0", "dWx", "dWh" or "db"."""
    args = _f64(dh, x, h0, h, Wx, Wh)
    choices = {hint: dict(tanh_grad=grad) for hint, grad in _TANH_GRAD_MISTAKES.items()}
    choices["the dprev_h that step t+1 hands back is not added to dh[:, t]: h[:, t] reaches the loss directly and "
            "through the next step."] = dict(carry=False)
    choices["the steps run forward in time: backpropagation through time goes from t = T-1 down to 0."] = \
        dict(backwards=False)
    if output in ("dWx", "dWh", "db"):
        choices["only step 0's share of the weight gradient is left: it is assigned at each step (=), not added "
                "up (+=)."] = dict(accumulate=False)
    if output == "dWh":
        choices["prev_h of step t taken as h[:, t]: it is h[:, t-1] (h0 at t = 0)."] = dict(prev_is_h_t=True)
    mistakes = {hint: _bptt(*args, **choice)[output] for hint, choice in choices.items()}
    if output == "dh0":
        mistakes["dh0 is 0: it is the dprev_h that the step at t = 0 hands back."] = np.zeros_like(args[2])
    return mistakes


def word_embedding_backward(dout, ids, vocab_size):
    """Mistakes of `word_embedding_backward`: dout (N, T, D), ids (N, T) -> dW (V, D)."""
    (dout,), ids = _f64(dout), np.asarray(ids).astype(np.int64).ravel()
    rows = dout.reshape(len(ids), -1)  # (N*T, D)
    one_kept = np.zeros((vocab_size, rows.shape[1]))
    one_kept[ids] = rows  # NumPy keeps one of the rows of a repeated id (the last)
    summed = np.zeros_like(one_kept)
    np.add.at(summed, ids, rows)
    counts = np.bincount(ids, minlength=vocab_size)[:, None]
    return {
        "a repeated word kept the gradient of only one of its occurrences: they add up (`dW[ids] += dout` keeps "
        "one; `np.add.at` or `ops.segment_sum` add them all).": one_kept,
        "a repeated word got the mean of its occurrences' gradients: they add up (a sum, not a mean).":
            summed / np.maximum(counts, 1),
    }


def temporal_softmax_loss_backward(logits, targets, ignore_index=0):
    """Mistakes of `temporal_softmax_loss_backward`: logits (N, T, V), targets (N, T) -> dlogits (N, T, V)."""
    (z,), targets = _f64(logits), np.asarray(targets).astype(np.int64)
    N, V = len(targets), z.shape[-1]
    counted = (targets != ignore_index)[..., None]  # (N, T, 1)
    error = _softmax(z, axis=-1) - np.eye(V)[targets]  # softmax - onehot, at every position
    return {
        "the positions whose target is ignore_index (<NULL>) send back a gradient: is the mask applied?": error / N,
        "divided by the number of counted tokens: the loss divides by N, the batch size.":
            error * counted / max(counted.sum(), 1),
        "divided by N*T, every position: the loss sums over time and divides by N only.":
            error * counted / targets.size,
        "not divided by N: the loss averages over the batch.": error * counted,
        "the one-hot of the target is not subtracted: dlogits = (softmax - onehot) / N.":
            _softmax(z, axis=-1) * counted / N,
        "the sign is flipped: dlogits = softmax - onehot (the loss falls as the target's logit rises).":
            -error * counted / N,
    }


def _lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b, order="ifgo", dz_order="ifgo",
                        sigmoid_grad=lambda s: s * (1 - s), from_next_c=True, through_h=True, times_f=True):
    """NumPy LSTM step backward with the chosen mistakes: z's blocks read in `order`, dz's written in `dz_order`."""
    blocks = dict(zip(order, np.split(x @ Wx + prev_h @ Wh + b, 4, axis=-1)))
    i, f, o, g = _sigmoid(blocks["i"]), _sigmoid(blocks["f"]), _sigmoid(blocks["o"]), np.tanh(blocks["g"])
    tanh_c = np.tanh(f * prev_c + i * g)
    dc = (dnext_c if from_next_c else 0) + (dnext_h * o * (1 - tanh_c**2) if through_h else 0)
    dblocks = {"i": dc * g * sigmoid_grad(i), "f": dc * prev_c * sigmoid_grad(f), "g": dc * i * (1 - g**2),
               "o": dnext_h * tanh_c * sigmoid_grad(o)}
    grads = _affine_backward(np.concatenate([dblocks[k] for k in dz_order], axis=-1), x, prev_h, Wx, Wh)
    return {**grads, "dprev_c": dc * f if times_f else dc}


_WEIGHT_GRADS = ("dx", "dprev_h", "dWx", "dWh", "db")

# hint -> (the mistake, the gradients it changes)
_LSTM_BACKWARD_MISTAKES = {
    "gates read in CS231n's order i, f, o, g? Lesson 04's LSTMCell (and Keras) orders them i, f, g, o.":
        (dict(order="ifog", dz_order="ifog"), (*_WEIGHT_GRADS, "dprev_c")),
    "dz's blocks are in the order i, f, o, g: they must line up with z's, i, f, g, o.":
        (dict(dz_order="ifog"), _WEIGHT_GRADS),
    "sigmoid'(z) written as s: it is s (1 - s), with s = sigmoid(z).":
        (dict(sigmoid_grad=lambda s: s), _WEIGHT_GRADS),
    "dnext_c is not added: dc = dnext_c + dnext_h * o * tanh'(next_c).": (dict(from_next_c=False),
                                                                           (*_WEIGHT_GRADS, "dprev_c")),
    "the path from next_h into c is missing: dc = dnext_c + dnext_h * o * tanh'(next_c).":
        (dict(through_h=False), (*_WEIGHT_GRADS, "dprev_c")),
    "dprev_c = dc: c = f * prev_c + i * g, so dprev_c = dc * f.": (dict(times_f=False), ("dprev_c",)),
}


def lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b, output):
    """Mistakes of `lstm_step_backward`; `output` names the gradient: "dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"."""
    args = _f64(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b)
    return {hint: _lstm_step_backward(*args, **choice)[output]
            for hint, (choice, outputs) in _LSTM_BACKWARD_MISTAKES.items() if output in outputs}
