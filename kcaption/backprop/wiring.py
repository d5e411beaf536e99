"""Kit code: train with the students' backward steps, through `tf.custom_gradient`.

A layer built with `manual_backward=True` runs its forward as usual (the
student's `call`), keeps only the value (`stop_gradient`), and hands that value
to a `tf.custom_gradient` function of the step's inputs and weights whose
gradient is the student's backward step. Autodiff still chains everything
else (Dense layers, `keras.layers.RNN`'s loop and masks, the optimizer): only
the steps of lesson 08 are replaced, so a `fit` on manual gradients ends with
the same weights as one on autodiff (tests/test_08_backprop.py checks it).

Why a value computed outside and passed in, rather than the forward inside
the custom function? The forward reads the layer's variables; inside
`tf.custom_gradient` that would make the gradient function answer for those
variables too (its `variables=` argument). Reading each weight once, outside,
as a tensor, keeps the custom function a pure function of tensors, and
TensorFlow carries the weight gradients back to the variables by itself.

Mixed precision is not supported on this path: it is for checking gradients
(float64) and for small runs, not for the COCO job.
"""

import functools

import tensorflow as tf
from keras import ops

from kcaption.backprop.embedding import word_embedding_backward
from kcaption.backprop.loss import temporal_softmax_loss_backward
from kcaption.backprop.lstm import lstm_step_backward
from kcaption.backprop.rnn import rnn_step_backward


def check_manual_backward(manual_backward):
    """`manual_backward` must be a bool (a layer's constructor argument)."""
    if not isinstance(manual_backward, bool):
        raise ValueError(f"`manual_backward` must be True or False. Received: manual_backward={manual_backward!r}")


def _checked(function, gradients, names, inputs):
    """The gradients a backward step returned, checked against the inputs they belong to (count, shape, dtype)."""
    gradients = tuple(gradients) if isinstance(gradients, list | tuple) else (gradients,)
    if len(gradients) != len(names):
        raise ValueError(
            f"{function} must return {len(names)} gradients, ({', '.join(names)}). "
            f"Received: {len(gradients)} values."
        )
    checked = []
    for gradient, name, value in zip(gradients, names, inputs):
        gradient = ops.convert_to_tensor(gradient)
        if gradient.shape.is_fully_defined() and value.shape.is_fully_defined() and gradient.shape != value.shape:
            raise ValueError(
                f"{function} returned {name} of shape {tuple(gradient.shape)}; a gradient has the shape of its "
                f"variable, {tuple(value.shape)}. Received: {name}.shape={tuple(gradient.shape)}"
            )
        checked.append(ops.cast(gradient, value.dtype))
    return checked


def _or_zeros(gradient, like):
    return ops.zeros_like(like) if gradient is None else gradient


def _weights(layer, *names):
    return [ops.convert_to_tensor(getattr(layer, name)) for name in names]


@tf.custom_gradient
def _rnn_step(x, prev_h, Wx, Wh, b, next_h):
    def gradient(dnext_h):
        names = ("dx", "dprev_h", "dWx", "dWh", "db")
        grads = _checked("rnn_step_backward", rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh), names,
                         (x, prev_h, Wx, Wh, b))
        return (*grads, None)

    return tf.identity(next_h), gradient


def rnn_cell(call):
    """Wrap `RNNCell.call`: with `self.manual_backward`, its gradients are `rnn_step_backward`'s."""

    @functools.wraps(call)
    def wrapped(self, inputs, states, training=None):
        h, next_states = call(self, inputs, states, training=training)
        if not self.manual_backward:
            return h, next_states
        h = _rnn_step(inputs, states[0], *_weights(self, "Wx", "Wh", "b"), tf.stop_gradient(h))
        return h, [h]

    return wrapped


@tf.custom_gradient
def _lstm_step(x, prev_h, prev_c, Wx, Wh, b, next_h, next_c):
    def gradient(dnext_h, dnext_c):
        dnext_h, dnext_c = _or_zeros(dnext_h, next_h), _or_zeros(dnext_c, next_c)
        names = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")
        grads = _checked("lstm_step_backward", lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b),
                         names, (x, prev_h, prev_c, Wx, Wh, b))
        return (*grads, None, None)

    return (tf.identity(next_h), tf.identity(next_c)), gradient


def lstm_cell(call):
    """Wrap `LSTMCell.call`: with `self.manual_backward`, its gradients are `lstm_step_backward`'s."""

    @functools.wraps(call)
    def wrapped(self, inputs, states, training=None):
        h, next_states = call(self, inputs, states, training=training)
        if not self.manual_backward:
            return h, next_states
        h, c = _lstm_step(inputs, states[0], states[1], *_weights(self, "Wx", "Wh", "b"),
                          tf.stop_gradient(next_states[0]), tf.stop_gradient(next_states[1]))
        return h, [h, c]

    return wrapped


@tf.custom_gradient
def _embedding(W_embed, ids, out):
    def gradient(dout):
        (dW,) = _checked("word_embedding_backward", word_embedding_backward(dout, ids, W_embed.shape[0]),
                         ("dW_embed",), (W_embed,))
        return dW, None, None

    return tf.identity(out), gradient


def word_embedding(call):
    """Wrap `WordEmbedding.call`: with `self.manual_backward`, its gradient is `word_embedding_backward`'s."""

    @functools.wraps(call)
    def wrapped(self, inputs):
        out = call(self, inputs)
        if not self.manual_backward:
            return out
        return _embedding(*_weights(self, "W_embed"), ops.cast(inputs, "int32"), tf.stop_gradient(out))

    return wrapped


def temporal_softmax_loss(logits, targets, loss, ignore_index):
    """`loss` (the forward's value) with `temporal_softmax_loss_backward` as its gradient w.r.t. `logits`."""
    targets = ops.cast(targets, "int32")

    @tf.custom_gradient
    def attach(logits, loss):
        def gradient(dloss):
            (dlogits,) = _checked("temporal_softmax_loss_backward",
                                  temporal_softmax_loss_backward(logits, targets, ignore_index), ("dlogits",),
                                  (logits,))
            return dlogits * ops.cast(dloss, dlogits.dtype), None

        return tf.identity(loss), gradient

    return attach(ops.convert_to_tensor(logits), tf.stop_gradient(loss))
