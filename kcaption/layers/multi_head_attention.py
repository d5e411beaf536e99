"""Multi-head attention: several scaled dot-product attentions side by side.

Each head projects the queries, keys and values to its own d = E / h
dimensions, attends, and the heads' outputs are concatenated and projected
back to E. Different heads can look for different things at once (one for the
colour word's object, one for the word just written, ...).
"""

import warnings

import keras
from keras import ops  # noqa: F401 (for your code in call)

from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@keras.saving.register_keras_serializable(package="kcaption")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention with masks, dropout and DropHead.

    Weights, created in build() in this order: Wq, bq, Wk, bk, Wv, bv, Wo, bo,
    each W (E_in, E) and b (E,). They are `keras.layers.MultiHeadAttention`'s
    weights reshaped: its query kernel (E, h, d) is Wq.reshape(E, h, d), its
    output kernel (h, d, E) is Wo.reshape(h, d, E).

    Args:
        embed_dim: E, the model width; the output has E features.
        num_heads: h; E must be divisible by h (d = E / h per head).
        dropout: dropout rate on the attention weights, in training only.
        drop_head: DropHead rate: in training, drop whole heads per example and
            rescale the kept ones by 1 / (1 - drop_head). 0 turns it off.
        seed: optional int seed for the dropout and DropHead noise.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        query: (N, T, E) the positions that ask.
        value: (N, S, E_kv) the positions that answer.
        key: (N, S, E_kv), default `value`.
        attention_mask: optional boolean (N, T, S) or (T, S); True where query
            t may attend to key s. A query row with no True gets zero weights
            (not NaN), as in Keras.
        return_attention_scores: also return the attention weights.
        training: dropout and DropHead are active only when True.

    Returns:
        (N, T, E); with `return_attention_scores`, the pair (output, weights)
        where weights (N, h, T, S) are the softmax before dropout.

    Masking:
        Only through `attention_mask`; Keras masks on the inputs are ignored.

    Example:
        >>> mha = MultiHeadAttention(embed_dim=32, num_heads=4)
        >>> y, w = mha(x, memory, return_attention_scores=True)  # (N, T, 32), (N, 4, T, S)

    References:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.2;
        Zhou et al., "Scheduled DropHead", 2020; keras.layers.MultiHeadAttention.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, drop_head=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(embed_dim=embed_dim)
        if not isinstance(num_heads, int) or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"`num_heads` must be a positive int dividing embed_dim={embed_dim}. "
                f"Received: num_heads={num_heads!r}"
            )
        for name, rate in (("dropout", dropout), ("drop_head", drop_head)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={rate!r}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.drop_head = drop_head
        self.seed = seed
        self.head_dim = embed_dim // num_heads
        self.dropout_layer = keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        E = self.embed_dim
        for name, shape in (("q", query_shape), ("k", key_shape), ("v", value_shape)):
            setattr(self, f"W{name}", self.add_weight(name=f"W{name}", shape=(shape[-1], E)))
            setattr(self, f"b{name}", self.add_weight(name=f"b{name}", shape=(E,), initializer="zeros"))
        self.Wo = self.add_weight(name="Wo", shape=(E, E))
        self.bo = self.add_weight(name="bo", shape=(E,), initializer="zeros")

    def __call__(self, query, value, *args, **kwargs):
        keys = kwargs.get("key", args[0] if args else None)
        keys = value if keys is None else keys
        if len(keys.shape) < 2 or keys.shape[1] != 1:
            return super().__call__(query, value, *args, **kwargs)
        with warnings.catch_warnings():
            # Over one key (a one-token prefix) the softmax of one score is 1, exactly right;
            # Keras's ops.softmax warns about any axis of size 1. Other warnings still show.
            warnings.filterwarnings("ignore", message=r"You are using a softmax over axis .* has size 1")
            return super().__call__(query, value, *args, **kwargs)

    @graded("transformer.multi_head_attention", lesson="06_transformer", points=4)
    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        """Multi-head attention of `query` over `key`/`value`.

        Math (h heads of d = E / h dimensions; N batch, T queries, S keys):
            Q = query Wq + bq,  K = key Wk + bk,  V = value Wv + bv     (N, T|S, E)
            split each into heads: (N, T, E) -> (N, T, h, d)
            scores[n, i, t, s] = Q[n, t, i] . K[n, s, i] / sqrt(d)      (N, h, T, S)
            scores = -1e9 where attention_mask is False
            weights = softmax(scores over s), then 0 where the mask is False
            heads[n, t, i] = sum_s dropout(weights)[n, i, t, s] V[n, s, i]   (N, T, h, d)
            heads = DropHead(heads)                      (training only, if drop_head > 0)
            output = concat(heads) Wo + bo                               (N, T, E)

        Args:
            query: (N, T, E_q); value: (N, S, E_kv); key: default `value`.
            attention_mask: None or boolean, broadcastable to (N, T, S).
            return_attention_scores: return (output, weights) if True.
            training: for `self.dropout_layer` and DropHead.

        Returns:
            output (N, T, E), or (output, weights (N, h, T, S)).

        Hints:
            - Tools: `ops.matmul`; `ops.reshape` and `ops.transpose`, or
              `ops.einsum` (which contracts and reorders axes at once), to go
              between (N, T, E) and one (T, d) slice per head; `ops.shape` (N, T,
              S are tensors in a compiled graph); `ops.softmax`, `ops.where`,
              `ops.expand_dims`, `ops.cast`.
            - A reshape keeps the numbers in order: (N, T, E) splits into
              (N, T, h, d) directly, never straight into (N, h, T, d).
            - The mask has no head axis. A masked score must not be -inf (a
              fully masked row would become NaN); after the softmax a masked
              weight is exactly 0, as in Keras.
            - The weights returned are those before dropout.
            - DropHead: `keras.random.dropout` takes a `noise_shape` (axes of
              size 1 share one draw: here one per example and head) and
              `seed=self.seed_generator`; only when `training` and
              `self.drop_head > 0`.
        """
        raise NotImplementedError(
            "TODO transformer.multi_head_attention: implement MultiHeadAttention.call in "
            "kcaption/layers/multi_head_attention.py (lesson 06_transformer)"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "drop_head": self.drop_head,
            "seed": self.seed,
        }
