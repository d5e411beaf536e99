"""Attention over spatial image features, and the attention LSTM built on it.

A plain LSTM captioner sees the image once, as one pooled vector. The attention
LSTM keeps the CNN's grid of L = h x w feature vectors A (N, L, H) and, at every
step, looks at the part of the image its previous hidden state asks for:

    scores = A h_prev / sqrt(H)          (N, L)
    weights = softmax(scores over L)     (N, L)   where to look
    context = weights^T A                (N, H)   what is seen there

The context vector joins the LSTM's gate pre-activations through its own weight
matrix Wattn (EECS 498, "Attention LSTM"; Xu et al., "Show, Attend and Tell").
"""

import keras
from keras import ops

from kcaption.layers.lstm import forget_bias_initializer
from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@graded("attention.dot_product", lesson="05_attention_lstm", points=2)
def dot_product_attention(h_prev, A):
    """Scaled dot-product attention of one query vector over L positions.

    Math (per example n):
        scores[l] = A[l] . h_prev / sqrt(H)        l = 0 .. L-1
        weights   = softmax(scores)                sums to 1 over the L positions
        context   = sum_l weights[l] * A[l]

    Args:
        h_prev: (N, H) the previous hidden state, used as the query.
        A: (N, L, H) the projected spatial features (keys and values at once).

    Returns:
        context: (N, H) the attention-weighted average of A.
        weights: (N, L) the attention weights; every row sums to 1.

    Hints:
        - Tools: `ops.einsum` for batched dot products and weighted sums (or
          `ops.matmul` with `ops.expand_dims` / `ops.squeeze`), `ops.softmax(x, axis=...)`,
          `ops.sqrt`, `ops.shape`, `ops.cast`.
        - Which axis does the softmax run over? Each example's weights sum to 1
          over its L positions.
        - H read from a shape is an integer: cast it to A's dtype before the
          square root (a float32 sqrt(H) loses precision on float64 inputs).

    References:
        Xu et al. 2015, "Show, Attend and Tell"; Vaswani et al. 2017, section 3.2.1
        (scaled dot-product attention); `keras.layers.Attention`.
    """
    raise NotImplementedError(
        "TODO attention.dot_product: implement dot_product_attention in "
        "kcaption/layers/attention.py (lesson 05_attention_lstm)"
    )


def attention_initial_state(features):
    """The attention LSTM's first states [h0, c0, A]: h0 = c0 = mean of A over L (EECS 498).

    Args:
        features: A, (N, L, H) the projected spatial features.

    Returns:
        [h0 (N, H), c0 (N, H), A (N, L, H)].
    """
    h0 = ops.mean(features, axis=1)  # (N, H)
    return [h0, h0, features]


@keras.saving.register_keras_serializable(package="kcaption")
class AttentionLSTMCell(keras.layers.Layer):
    """One step of an LSTM that attends over spatial features (i, f, g, o gates).

    The features A travel as a third state that every step passes on unchanged:
    Keras 3's `keras.layers.RNN` has no `constants=` argument (Keras 2 had), and
    a state is the one input a cell sees at every step. Run the cell over a
    sequence with `AttentionLSTM`, which can also return the attention weights.

    Args:
        units: H, the size of the hidden and cell state; the spatial features
            must already be projected to H channels.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: (N, D) the word embedding x_t of this step.
        states: a list [h_prev (N, H), c_prev (N, H), A (N, L, H)].
        training: unused (no dropout); kept for the Keras signature.

    Returns:
        `(h, [h, c, A])`: the new hidden state (N, H) and the next states.

    Masking:
        Handled by `AttentionLSTM`: at a masked step the states are carried over.

    Example:
        >>> cell = AttentionLSTMCell(8)
        >>> h, states = cell(x, attention_initial_state(A))   # x (N, D), A (N, L, 8)

    References:
        Xu et al., "Show, Attend and Tell", ICML 2015; EECS 498-007 A4
        (`AttentionLSTM`); `keras.layers.LSTMCell` (gate order).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(units=units)
        self.units = units

    def build(self, input_shape):
        input_dim, H = input_shape[-1], self.units
        self.Wx = self.add_weight(name="Wx", shape=(input_dim, 4 * H), initializer="glorot_uniform")
        self.Wh = self.add_weight(name="Wh", shape=(H, 4 * H), initializer="orthogonal")
        self.Wattn = self.add_weight(name="Wattn", shape=(H, 4 * H), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(4 * H,), initializer=forget_bias_initializer(H))

    @graded("attention.lstm_cell", lesson="05_attention_lstm", points=4)
    def call(self, inputs, states, training=None):
        """One attention LSTM step.

        Math (gate order i, f, g, o, as in keras.layers.LSTM):
            context, weights = dot_product_attention(h_prev, A)      (N, H), (N, L)
            z = x Wx + h_prev Wh + context Wattn + b                 (N, 4H)
            z_i, z_f, z_g, z_o = split(z, 4)                         4 x (N, H)
            i = sigmoid(z_i); f = sigmoid(z_f); g = tanh(z_g); o = sigmoid(z_o)
            c = f * c_prev + i * g
            h = o * tanh(c)

        Shapes: inputs x (N, D); states = [h_prev (N, H), c_prev (N, H), A (N, L, H)];
        self.Wx (D, 4H), self.Wh (H, 4H), self.Wattn (H, 4H), self.b (4H,).

        Returns:
            `h, [h, c, A]`: A is passed on unchanged.

        Hints:
            - `states` holds h_prev, c_prev and A, in that order.
            - The attention's query is the *previous* hidden state: attend before
              the gates, with your `dot_product_attention` from this file.
            - Tools: `ops.matmul`, `ops.split`, `ops.sigmoid`, `ops.tanh`: the gates
              are your LSTMCell's, with one more term in z.
        """
        raise NotImplementedError(
            "TODO attention.lstm_cell: implement AttentionLSTMCell.call in "
            "kcaption/layers/attention.py (lesson 05_attention_lstm)"
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="kcaption")
class AttentionLSTM(keras.layers.Layer):
    """Runs an `AttentionLSTMCell` over a sequence, optionally returning its attention.

    The loop over time is a Python loop, unrolled when traced (captions are
    padded to a fixed length): simple to read, and XLA-compilable, which
    `keras.ops.scan`'s gradient is not on the TensorFlow backend.

    Args:
        units: H, the hidden size (the features must have H channels).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (N, T, D) the embedded input words.
        initial_state: [h0 (N, H), c0 (N, H), A (N, L, H)], e.g. from
            `attention_initial_state(A)`.
        mask: optional boolean (N, T); at a False step the states (and the
            output) are carried over from the step before, as in `keras.layers.RNN`.
        return_attention: also return the attention weights of every step.
        training: unused.

    Returns:
        h: (N, T, H) the hidden state of every step; with `return_attention`,
        the pair `(h, weights)` where weights (N, T, L) are the attention each
        step used (computed from the state the step started with).

    Masking:
        Supported (`mask` above, or a Keras mask from a `mask_zero` embedding),
        so padding never changes the states of the words before it.

    Example:
        >>> lstm = AttentionLSTM(8)
        >>> h, weights = lstm(x, attention_initial_state(A), return_attention=True)

    References:
        Xu et al., "Show, Attend and Tell", ICML 2015.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(units=units)
        self.units = units
        self.supports_masking = True
        self.cell = AttentionLSTMCell(units, name="cell", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, initial_state, mask=None, return_attention=False, training=None):
        steps = inputs.shape[1]
        if steps is None:
            raise ValueError(
                "AttentionLSTM unrolls its loop over time, so the sequence length must be known "
                f"(pad captions to a fixed length). Received: inputs.shape={tuple(inputs.shape)}"
            )
        h, c, A = initial_state
        outputs, attention = [], []
        for t in range(steps):
            if return_attention:  # what the cell attends to at this step, for the caller
                attention.append(dot_product_attention(h, A)[1])  # (N, L)
            h_new, (_, c_new, _) = self.cell(inputs[:, t], [h, c, A])
            if mask is None:
                h, c = h_new, c_new
            else:  # a masked step carries the states over
                keep = ops.expand_dims(ops.cast(mask[:, t], "bool"), 1)  # (N, 1)
                h, c = ops.where(keep, h_new, h), ops.where(keep, c_new, c)
            outputs.append(h)
        h = ops.stack(outputs, axis=1)  # (N, T, H)
        if return_attention:
            return h, ops.stack(attention, axis=1)  # (N, T, L)
        return h

    def get_config(self):
        return {**super().get_config(), "units": self.units}
