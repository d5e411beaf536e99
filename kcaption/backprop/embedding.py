"""The word embedding's backward pass."""

from keras import ops  # noqa: F401 (for your code)

from kcaption.steps import graded


@graded("backprop.embedding", lesson="08_backprop", points=2)
def word_embedding_backward(dout, ids, vocab_size):
    """The gradient of the embedding matrix, from the gradient of the looked-up vectors.

    The forward picked rows: out[n, t, :] = W_embed[ids[n, t], :]. So row v of
    dW_embed is the sum of dout[n, t, :] over every position (n, t) whose id is
    v, and 0 for a word that does not occur:
        dW[v, :] = sum over (n, t) with ids[n, t] == v of dout[n, t, :]

    Shapes: dout (N, T, D) = dL/dout; ids (N, T) int; vocab_size V -> dW (V, D),
    in dout's dtype.

    Hints:
    - A word can occur twice in a batch (think of "a"): its gradients add up.
      NumPy's `dW[ids] += dout` does not do that (fancy-index assignment keeps
      one of them); `np.add.at` does.
    - Tools: `ops.segment_sum(data, segment_ids, num_segments=...)` sums the
      rows of `data` that share an id; `ops.reshape` to flatten (N, T) to N*T
      rows first; `ops.cast` the ids to int32.
    - No loop over N or T is needed.
    """
    raise NotImplementedError(
        "TODO backprop.embedding: implement word_embedding_backward in kcaption/backprop/embedding.py "
        "(lesson 08_backprop)"
    )
