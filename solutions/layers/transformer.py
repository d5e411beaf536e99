"""Reference bodies for kcaption/layers/transformer.py."""

from keras import ops

from kcaption.layers.transformer import causal_mask as _causal_mask


def causal_mask(length):
    i = ops.arange(length)
    return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)  # (T, T): query t, key s <= t


class TransformerDecoderLayer:
    def call(self, inputs, memory, padding_mask=None, return_attention_scores=False, training=None):
        T = ops.shape(inputs)[1]
        mask = _causal_mask(T)[None]  # (1, T, T)
        if padding_mask is not None:
            mask = ops.logical_and(mask, ops.cast(padding_mask, "bool")[:, None, :])  # (N, T, T)

        # Self-attention block.
        x = inputs
        attended = self.self_attention(x, x, attention_mask=mask, training=training)
        x = self.self_norm(x + self.dropout_layer(attended, training=training))

        # Cross-attention block.
        attended, cross_weights = self.cross_attention(
            x, memory, return_attention_scores=True, training=training
        )
        x = self.cross_norm(x + self.dropout_layer(attended, training=training))

        # Feed-forward block.
        hidden = self.feedforward_output(self.feedforward_hidden(x))
        x = self.feedforward_norm(x + self.dropout_layer(hidden, training=training))

        if return_attention_scores:
            return x, cross_weights
        return x
