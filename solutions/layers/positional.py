"""Reference body for kcaption/layers/positional.py."""

from keras import ops


class PositionalEncoding:
    def call(self, inputs, training=None):
        T, D = ops.shape(inputs)[1], self.embed_dim
        t = ops.cast(ops.arange(T), inputs.dtype)[:, None]  # (T, 1)
        j = ops.arange(D)  # (D,)
        exponent = ops.cast(2 * (j // 2), inputs.dtype) / D
        angle = t * ops.power(ops.cast(10000.0, inputs.dtype), -exponent)[None, :]  # (T, D)
        pe = ops.where(j % 2 == 0, ops.sin(angle), ops.cos(angle))  # (T, D)
        return self.dropout_layer(inputs + pe, training=training)
