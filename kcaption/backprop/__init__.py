"""Backprop by hand (lesson 08): the backward passes autodiff usually writes for you.

Each graded step takes the gradient of the loss with respect to a step's
outputs and returns it with respect to the step's inputs and weights, in the
forward steps' conventions (`x @ Wx + h @ Wh + b`, LSTM gates i, f, g, o):

    rnn_step_backward, rnn_backward     kcaption/backprop/rnn.py
    lstm_step_backward                  kcaption/backprop/lstm.py
    word_embedding_backward             kcaption/backprop/embedding.py
    temporal_softmax_loss_backward      kcaption/backprop/loss.py

`kcaption.backprop.wiring` (kit code) hands them to TensorFlow through
`tf.custom_gradient`: `RNNCell`, `LSTMCell`, `WordEmbedding` and
`TemporalSoftmaxLoss` built with `manual_backward=True` train with them.
`kcaption.testing.numeric_gradient` checks them against centred differences.
"""

from kcaption.backprop.embedding import word_embedding_backward
from kcaption.backprop.loss import temporal_softmax_loss_backward
from kcaption.backprop.lstm import lstm_step_backward
from kcaption.backprop.rnn import rnn_backward, rnn_step_backward

__all__ = [
    "lstm_step_backward",
    "rnn_backward",
    "rnn_step_backward",
    "temporal_softmax_loss_backward",
    "word_embedding_backward",
]
