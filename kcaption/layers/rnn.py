"""A vanilla (Elman) RNN cell: one time step, to be run by `keras.layers.RNN`."""

import keras
from keras import ops  # noqa: F401 (for your code in call)

from kcaption.backprop import wiring
from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@keras.saving.register_keras_serializable(package="kcaption")
class RNNCell(keras.layers.Layer):
    """One step of a vanilla RNN: h = tanh(x Wx + h_prev Wh + b).

    Wrap it in `keras.layers.RNN` to run it over a sequence: the wrapper loops
    over time, applies masks, and returns the last output or all of them.

    Args:
        units: size H of the hidden state.
        manual_backward: if True, training backpropagates through this cell with
            your lesson-08 `rnn_step_backward` (kcaption/backprop) instead of autodiff.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the input at one time step, (N, D).
        states: a list holding the previous hidden state h_prev, (N, H).
        training: unused (no dropout), kept for the RNN API.

    Returns:
        `(h, [h])`: the new hidden state as output and as the next state.

    Masking:
        Handled by `keras.layers.RNN`: at a masked step the state is carried over
        unchanged and the output repeats the previous one.

    Example:
        >>> rnn = keras.layers.RNN(RNNCell(8), return_sequences=True)
        >>> rnn(np.zeros((2, 5, 3), "float32")).shape
        TensorShape([2, 5, 8])

    References:
        Elman, "Finding structure in time" (1990); CS231n assignment 3,
        `rnn_step_forward`; `keras.layers.SimpleRNNCell` (same weights as
        `kernel`, `recurrent_kernel`, `bias`).
    """

    def __init__(self, units, manual_backward=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(units=units)
        wiring.check_manual_backward(manual_backward)
        self.units = units
        self.manual_backward = manual_backward
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.Wx = self.add_weight(name="Wx", shape=(input_dim, self.units), initializer="glorot_uniform")
        self.Wh = self.add_weight(name="Wh", shape=(self.units, self.units), initializer="orthogonal")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")

    @wiring.rnn_cell
    @graded("rnn.cell", lesson="03_rnn", points=3)
    def call(self, inputs, states, training=None):
        """One RNN step.

        Math: h = tanh(x Wx + h_prev Wh + b)

        Shapes: inputs x (N, D); states = [h_prev (N, H)]; self.Wx (D, H),
        self.Wh (H, H), self.b (H,) -> h (N, H).

        Hints:
        - `states` is a list (or tuple) of the cell's states; this cell has one.
        - Tools: `ops.matmul`, `ops.tanh`; b (H,) broadcasts over the batch.
        - A Keras cell returns its output, then the list of its next states, in
          the order of `states`; here the next state is h itself.
        """
        raise NotImplementedError(
            "TODO rnn.cell: implement RNNCell.call in kcaption/layers/rnn.py (lesson 03_rnn)"
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units, "manual_backward": self.manual_backward}
