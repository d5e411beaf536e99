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

from kcaption.steps import graded


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
        - `ops.einsum("nlh,nh->nl", A, h_prev)` gives all L scores at once.
        - Scale by sqrt(H) with H = `ops.shape(A)[-1]` (cast it to float).
        - `ops.softmax(x, axis=-1)`; then another einsum for the context.
    """
    raise NotImplementedError(
        "TODO attention.dot_product: implement dot_product_attention in "
        "kcaption/layers/attention.py (lesson 05_attention_lstm)"
    )


@keras.saving.register_keras_serializable(package="kcaption")
class AttentionLSTMCell(keras.layers.Layer):
    """One step of an LSTM that attends over spatial features (i, f, g, o gates).

    Args:
        units: H, the size of the hidden and cell state; the spatial features
            must already be projected to H channels.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: (N, D) the word embedding x_t of this step.
        states: a list [h_prev (N, H), c_prev (N, H)].
        features: (N, L, H) the projected spatial features A.
        training: unused (no dropout); kept for the Keras signature.

    Returns:
        A tuple `(h, [h, c], weights)`: the new hidden state (N, H), the new
        states, and this step's attention weights (N, L). The extra third item
        is why this cell runs in `AttentionLSTM` rather than `keras.layers.RNN`
        (Keras 3's RNN has no `constants=` argument for the features).

    Masking:
        None: padded steps are computed like any other; the loss ignores them.

    Example:
        >>> cell = AttentionLSTMCell(8)
        >>> h, (h, c), weights = cell(x, [h0, c0], A)   # x (N, D), A (N, L, 8)

    References:
        Xu et al., "Show, Attend and Tell", ICML 2015; EECS 498-007 A4.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive int. Received: units={units!r}")
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        input_dim, h = input_shape[-1], self.units
        self.Wx = self.add_weight(name="Wx", shape=(input_dim, 4 * h), initializer="glorot_uniform")
        self.Wh = self.add_weight(name="Wh", shape=(h, 4 * h), initializer="orthogonal")
        self.Wattn = self.add_weight(name="Wattn", shape=(h, 4 * h), initializer="glorot_uniform")
        # Forget-gate bias 1, as LSTMCell and keras.layers.LSTM's unit_forget_bias.
        self.b = self.add_weight(
            name="b",
            shape=(4 * h,),
            initializer=keras.initializers.Constant([0.0] * h + [1.0] * h + [0.0] * (2 * h)),
        )

    @graded("attention.lstm_cell", lesson="05_attention_lstm", points=4)
    def call(self, inputs, states, features, training=None):
        """One attention LSTM step.

        Math (gate order i, f, g, o, as in keras.layers.LSTM):
            context, weights = dot_product_attention(h_prev, A)      (N, H), (N, L)
            z = x Wx + h_prev Wh + context Wattn + b                 (N, 4H)
            z_i, z_f, z_g, z_o = split(z, 4)                         4 x (N, H)
            i = sigmoid(z_i); f = sigmoid(z_f); g = tanh(z_g); o = sigmoid(z_o)
            c = f * c_prev + i * g
            h = o * tanh(c)

        Args:
            inputs: x, (N, D).
            states: [h_prev (N, H), c_prev (N, H)].
            features: A, (N, L, H).
            training: unused.

        Returns:
            (h, [h, c], weights) with shapes (N, H), 2 x (N, H), (N, L).

        Hints:
            - Attend with the *previous* hidden state h_prev, before the gates.
            - Use your `dot_product_attention` from this file.
            - `ops.split(z, 4, axis=-1)`, `ops.sigmoid`, `ops.tanh`.
        """
        raise NotImplementedError(
            "TODO attention.lstm_cell: implement AttentionLSTMCell.call in "
            "kcaption/layers/attention.py (lesson 05_attention_lstm)"
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="kcaption")
class AttentionLSTM(keras.layers.Layer):
    """Runs an `AttentionLSTMCell` over a whole sequence, attending at every step.

    The loop is `keras.ops.scan` over time (it works for any sequence length,
    also one unknown until the batch arrives). The spatial features stay fixed
    over the sequence: they are what `keras.layers.RNN(cell)(x, constants=A)`
    passed to every step in Keras 2.

    Args:
        units: H, the hidden size (the features must have H channels).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (N, T, D) the embedded input words.
        features: (N, L, H) the projected spatial features A.
        initial_state: optional [h0, c0], each (N, H). Default: h0 = c0 = the
            mean of A over its L positions (EECS 498's choice).
        return_attention: also return the weights of every step.
        training: unused.

    Returns:
        h: (N, T, H) the hidden state of every step; with `return_attention`,
        the pair `(h, weights)` where weights is (N, T, L).

    Masking:
        None; the temporal softmax loss ignores padded positions.

    Example:
        >>> lstm = AttentionLSTM(8)
        >>> h, weights = lstm(x, A, return_attention=True)   # (N, T, 8), (N, T, L)

    References:
        Xu et al., "Show, Attend and Tell", ICML 2015.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive int. Received: units={units!r}")
        self.units = units
        self.cell = AttentionLSTMCell(units, name="cell")

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, features, initial_state=None, return_attention=False, training=None):
        if initial_state is None:
            h0 = ops.mean(features, axis=1)  # (N, H)
            initial_state = [h0, h0]

        # The TensorFlow backend's scan wants its per-step outputs shaped like
        # its carry, so the carry holds the last weights too: (h, c, weights).
        def step(carry, x_t):
            h, (h, c), weights = self.cell(x_t, [carry[0], carry[1]], features)
            return (h, c, weights), (h, c, weights)

        x = ops.transpose(inputs, (1, 0, 2))  # (T, N, D), time first for the scan
        no_weights = ops.zeros_like(features[:, :, 0])  # (N, L)
        _, (h, _, weights) = ops.scan(step, (*initial_state, no_weights), x)
        h = ops.transpose(h, (1, 0, 2))  # (N, T, H)
        if return_attention:
            return h, ops.transpose(weights, (1, 0, 2))  # (N, T, L)
        return h

    def get_config(self):
        return {**super().get_config(), "units": self.units}
