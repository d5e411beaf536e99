"""Reference body for kcaption/layers/multi_head_attention.py."""

import keras
from keras import ops


class MultiHeadAttention:
    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        key = value if key is None else key
        N, T, S = ops.shape(query)[0], ops.shape(query)[1], ops.shape(key)[1]
        h, d = self.num_heads, self.head_dim
        Q = ops.reshape(ops.matmul(query, self.Wq) + self.bq, (N, T, h, d))
        K = ops.reshape(ops.matmul(key, self.Wk) + self.bk, (N, S, h, d))
        V = ops.reshape(ops.matmul(value, self.Wv) + self.bv, (N, S, h, d))

        scores = ops.einsum("nthd,nshd->nhts", Q, K) / ops.sqrt(ops.cast(d, Q.dtype))  # (N, h, T, S)
        if attention_mask is not None:
            mask = ops.expand_dims(ops.cast(attention_mask, "bool"), -3)  # (N|1, 1, T, S)
            scores = ops.where(mask, scores, ops.cast(-1e9, scores.dtype))
        weights = ops.softmax(scores, axis=-1)  # (N, h, T, S)
        if attention_mask is not None:
            weights = ops.where(mask, weights, ops.zeros_like(weights))

        heads = ops.einsum("nhts,nshd->nthd", self.dropout_layer(weights, training=training), V)
        if training and self.drop_head > 0:
            heads = keras.random.dropout(
                heads, self.drop_head, noise_shape=(N, 1, h, 1), seed=self.seed_generator
            )
        output = ops.matmul(ops.reshape(heads, (N, T, h * d)), self.Wo) + self.bo  # (N, T, E)
        if return_attention_scores:
            return output, weights
        return output
