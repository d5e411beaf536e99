"""Decoding: turn a captioner's next-word logits into captions.

The loop lives here, once, as in KerasHub's samplers: a decoder takes a
"next logits" callable, not a whole model, so every captioner (RNN, LSTM,
attention, Transformer) shares it, and a test can drive it with a tiny fake
model whose answers are known.

    next_logits(tokens, state) -> (logits, state)
        tokens: int32 (N,), the word fed in at this step;
        state:  whatever the model carries between steps (a list of tensors);
        logits: (N, V), scores of the next word.
"""

from keras import ops

from kcaption.steps import graded

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


def ids_to_text(ids, vocab):
    """Decode a batch of token ids (N, T) into caption strings, stopping at `<END>`."""
    return [vocab.decode(row) for row in ops.convert_to_numpy(ids).tolist()]
