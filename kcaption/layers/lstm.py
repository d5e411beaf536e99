"""An LSTM cell: one time step, to be run by `keras.layers.RNN`."""

import keras
from keras import ops  # noqa: F401 (for your code in call)

from kcaption.backprop import wiring
from kcaption.steps import graded
from kcaption.validation import check_positive_ints


def forget_bias_initializer(units):
    """Gate biases (4H,) in the order i, f, g, o: 1 for the forget gate, 0 elsewhere.

    Starting the forget gate open lets gradients flow through the cell state
    early in training (Jozefowicz et al. 2015); keras.layers.LSTM does the
    same with `unit_forget_bias=True`.
    """
    H = units
    return keras.initializers.Constant([0.0] * H + [1.0] * H + [0.0] * (2 * H))


@keras.saving.register_keras_serializable(package="kcaption")
class LSTMCell(keras.layers.Layer):
    """One step of a long short-term memory cell, gates in Keras's order i, f, g, o.

    The weights are laid out exactly as `keras.layers.LSTMCell`'s (`kernel`,
    `recurrent_kernel`, `bias`), so trained weights load into `keras.layers.LSTM`
    and back with `get_weights()` / `set_weights()`.

    Args:
        units: size H of the hidden and cell states.
        manual_backward: if True, training backpropagates through this cell with
            your lesson-08 `lstm_step_backward` (kcaption/backprop) instead of autodiff.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the input at one time step, (N, D).
        states: `[h_prev, c_prev]`, each (N, H).
        training: unused (no dropout), kept for the RNN API.

    Returns:
        `(h, [h, c])`: the new hidden state as output, and the next states.

    Masking:
        Handled by `keras.layers.RNN`: at a masked step both states are carried
        over unchanged, so a padded caption ends with the state of its last word.

    Example:
        >>> lstm = keras.layers.RNN(LSTMCell(8), return_sequences=True)
        >>> lstm(np.zeros((2, 5, 3), "float32")).shape
        TensorShape([2, 5, 8])
        >>> stacked = keras.layers.RNN([LSTMCell(8), LSTMCell(8)])  # two layers

    References:
        Hochreiter & Schmidhuber, "Long short-term memory" (1997); Gers et al.,
        "Learning to forget" (2000); CS231n assignment 3, `lstm_step_forward`
        (which orders the gates i, f, o, g); `keras.layers.LSTMCell`.
    """

    def __init__(self, units, manual_backward=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(units=units)
        wiring.check_manual_backward(manual_backward)
        self.units = units
        self.manual_backward = manual_backward
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        H = self.units
        self.Wx = self.add_weight(name="Wx", shape=(input_dim, 4 * H), initializer="glorot_uniform")
        self.Wh = self.add_weight(name="Wh", shape=(H, 4 * H), initializer="orthogonal")
        self.b = self.add_weight(name="b", shape=(4 * H,), initializer=forget_bias_initializer(H))

    @wiring.lstm_cell
    @graded("lstm.cell", lesson="04_lstm", points=4)
    def call(self, inputs, states, training=None):
        """One LSTM step.

        Math (gates in the order i, f, g, o, like Keras):
            z = x Wx + h_prev Wh + b                  (N, 4H)
            z_i, z_f, z_g, z_o = split z into 4 parts  4 x (N, H)
            i = sigmoid(z_i)   input gate
            f = sigmoid(z_f)   forget gate
            g = tanh(z_g)      candidate cell values
            o = sigmoid(z_o)   output gate
            c = f * c_prev + i * g
            h = o * tanh(c)

        Shapes: inputs x (N, D); states = [h_prev (N, H), c_prev (N, H)];
        self.Wx (D, 4H), self.Wh (H, 4H), self.b (4H,) -> h, c (N, H).

        Hints:
        - Tools: `ops.matmul`, `ops.split` (equal blocks along one axis),
          `ops.sigmoid`, `ops.tanh`; `*` is elementwise.
        - The four H-wide blocks of z follow the order above, i, f, g, o (not the
          i, f, o, g of older course notes): that is how Keras lays out its
          weights, so a `keras.layers.LSTM`'s weights load into this cell.
        - The cell returns its output, then its next states in the order of
          `states`.
        """
        raise NotImplementedError(
            "TODO lstm.cell: implement LSTMCell.call in kcaption/layers/lstm.py (lesson 04_lstm)"
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units, "manual_backward": self.manual_backward}
