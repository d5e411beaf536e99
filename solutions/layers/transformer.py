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

    def decode_step(self, inputs, memory, cache):
        keys, values = cache
        attention = self.self_attention
        Wq, bq, Wk, bk, Wv, bv, Wo, bo = (ops.cast(w, inputs.dtype) for w in attention.weights)
        N, h, d = ops.shape(inputs)[0], attention.num_heads, attention.head_dim

        # Self-attention block: the new position's query over every key so far.
        keys = ops.concatenate([keys, ops.matmul(inputs, Wk) + bk], axis=1)  # (N, t+1, E)
        values = ops.concatenate([values, ops.matmul(inputs, Wv) + bv], axis=1)  # (N, t+1, E)
        Q = ops.reshape(ops.matmul(inputs, Wq) + bq, (N, 1, h, d))
        K = ops.reshape(keys, (N, -1, h, d))  # (N, t+1, h, d)
        V = ops.reshape(values, (N, -1, h, d))
        scores = ops.einsum("nqhd,nshd->nhqs", Q, K) / ops.sqrt(ops.cast(d, Q.dtype))  # (N, h, 1, t+1)
        heads = ops.einsum("nhqs,nshd->nqhd", ops.softmax(scores, axis=-1), V)  # (N, 1, h, d)
        attended = ops.matmul(ops.reshape(heads, (N, 1, h * d)), Wo) + bo  # (N, 1, E)
        x = self.self_norm(inputs + attended)

        # Cross-attention block.
        x = self.cross_norm(x + self.cross_attention(x, memory))

        # Feed-forward block.
        x = self.feedforward_norm(x + self.feedforward_output(self.feedforward_hidden(x)))
        return x, (keys, values)
