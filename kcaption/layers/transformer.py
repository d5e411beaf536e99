"""The transformer decoder layer of the captioner, and its causal mask.

A caption is written left to right, so while training on whole captions at
once (teacher forcing) each word may only look at the words before it: the
causal mask. The image comes in through cross-attention to a memory sequence
of image features. Post-norm residual blocks, as in the original paper and
keras_hub's TransformerDecoder (normalize_first=False). While decoding, the
layer runs one new position at a time over a cache of the earlier positions'
self-attention keys and values (`decode_step`), instead of the whole prefix.
"""

import keras
from keras import ops  # noqa: F401 (for your code in the graded steps)

from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@graded("transformer.causal_mask", lesson="06_transformer", points=1)
def causal_mask(length):
    """The (T, T) boolean mask that lets position t attend to positions <= t.

    For length 4 (row = query position, column = key position; 1 = may attend):

        [[1, 0, 0, 0],
         [1, 1, 0, 0],
         [1, 1, 1, 0],
         [1, 1, 1, 1]]

    Math: mask[t, s] = (s <= t), for query position t and key position s in
    0 .. T-1: a word sees itself and the words before it, never a later one.

    Args:
        length: T, a Python int or a scalar tensor.

    Returns:
        A boolean (T, T) tensor, True on and below the diagonal.

    Hints:
        - Tools: `ops.arange(T)` (the positions 0 .. T-1), `ops.expand_dims`
          (a column against a row broadcasts to (T, T)), the comparison
          operators (<, <=, >=, ... on tensors give booleans), `ops.ones`,
          `ops.tril` / `ops.triu`, `ops.cast(..., "bool")`.
        - Which index is the query and which the key? Row t is the query, so
          row 0 has a single True, in column 0, and row T-1 is all True.
        - The diagonal is allowed: a word may look at itself.
    """
    raise NotImplementedError(
        "TODO transformer.causal_mask: implement causal_mask in "
        "kcaption/layers/transformer.py (lesson 06_transformer)"
    )


@keras.saving.register_keras_serializable(package="kcaption")
class TransformerDecoderLayer(keras.layers.Layer):
    """One decoder layer: causal self-attention, cross-attention, feed-forward.

    Args:
        embed_dim: E, the model width.
        num_heads: attention heads (E divisible by it).
        feedforward_dim: the hidden width of the feed-forward block (often 4E).
        dropout: dropout rate on attention weights and after each block.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (N, T, E) the embedded caption so far.
        memory: (N, L, E) the image features as a sequence.
        padding_mask: optional boolean (N, T), True on real tokens; padded keys
            are hidden from self-attention.
        return_attention_scores: also return the cross-attention weights.
        training: dropout is active only when True.

    Returns:
        (N, T, E); with `return_attention_scores`, the pair (output,
        cross_weights (N, h, T, L)).

    Masking:
        The causal mask is always applied; `padding_mask` on top of it.

    Example:
        >>> layer = TransformerDecoderLayer(32, num_heads=4, feedforward_dim=64)
        >>> y = layer(tokens, memory)   # (N, T, 32)

    References:
        Vaswani et al., 2017, section 3.1; keras_hub.layers.TransformerDecoder;
        CS231n assignment 3, "Transformer captioning".
    """

    def __init__(self, embed_dim, num_heads, feedforward_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(feedforward_dim=feedforward_dim)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.feedforward_dim = feedforward_dim
        self.dropout = dropout
        # Sub-layers in keras_hub.layers.TransformerDecoder's order, so the two
        # get_weights() lists line up; epsilon as there too. They compute in this layer's dtype.
        policy = self.dtype_policy
        self.self_attention = MultiHeadAttention(embed_dim, num_heads, dropout, name="self_attention", dtype=policy)
        self.self_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_norm", dtype=policy)
        self.cross_attention = MultiHeadAttention(embed_dim, num_heads, dropout, name="cross_attention", dtype=policy)
        self.cross_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="cross_norm", dtype=policy)
        self.feedforward_hidden = keras.layers.Dense(
            feedforward_dim, activation="relu", name="ffn_hidden", dtype=policy
        )
        self.feedforward_output = keras.layers.Dense(embed_dim, name="ffn_output", dtype=policy)
        self.feedforward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="ffn_norm", dtype=policy)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=policy)

    def build(self, inputs_shape, memory_shape):
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_norm.build(inputs_shape)
        self.cross_attention.build(inputs_shape, memory_shape)
        self.cross_norm.build(inputs_shape)
        self.feedforward_hidden.build(inputs_shape)
        self.feedforward_output.build((*inputs_shape[:-1], self.feedforward_dim))
        self.feedforward_norm.build(inputs_shape)

    @graded("transformer.decoder_layer", lesson="06_transformer", points=4)
    def call(self, inputs, memory, padding_mask=None, return_attention_scores=False, training=None):
        """One decoder layer over the caption `inputs`, attending to `memory`.

        Math (post-norm, as in the paper and keras_hub's TransformerDecoder;
        drop = self.dropout_layer, active only when training):
            mask = causal_mask(T), and also False at padded keys:
                mask[n, t, s] = (s <= t) and padding_mask[n, s]     (N|1, T, T)
            Self-attention block:
                x = self_norm(inputs + drop(self_attention(inputs, inputs, mask)))
            Cross-attention block (queries from the caption, keys/values from
            the image memory, no mask):
                x = cross_norm(x + drop(cross_attention(x, memory)))
            Feed-forward block:
                x = ffn_norm(x + drop(ffn_output(ffn_hidden(x))))    (N, T, E)

        Shapes: inputs (N, T, E), memory (N, L, E), padding_mask (N, T) bool
        (True on real tokens) or None; the cross-attention weights are
        (N, h, T, L).

        Args:
            inputs, memory, padding_mask: as in the class docstring.
            return_attention_scores: return (x, cross-attention weights) if True.
            training: pass it to every sub-layer that has dropout.

        Returns:
            x (N, T, E), or (x, cross_weights) when `return_attention_scores`.

        Tools, all created in __init__ (only call them, in the order above):
            self.self_attention, self.cross_attention: this package's
                MultiHeadAttention, called as `layer(query, value,
                attention_mask=..., return_attention_scores=..., training=...)`;
            self.self_norm, self.cross_norm, self.feedforward_norm: LayerNormalization;
            self.feedforward_hidden (relu), self.feedforward_output: Dense;
            self.dropout_layer: Dropout(self.dropout), `layer(x, training=training)`;
            causal_mask(T) above, T = `ops.shape(inputs)[1]`.

        Hints:
            - Combine the two masks with `ops.logical_and`; a (T, T) mask needs
              a batch axis in front, the padding mask a query axis in the
              middle: (N, T) -> (N, 1, T) hides padded *keys* from every query.
              Cast the padding mask with `ops.cast(..., "bool")`.
            - Post-norm: the residual is added *before* the norm, and the norm
              comes after the sum, not inside the sub-layer's input.
            - Dropout goes on the sub-layer's output, before it joins the residual.
            - The weights to return come from the cross-attention, not the
              self-attention.
        """
        raise NotImplementedError(
            "TODO transformer.decoder_layer: implement TransformerDecoderLayer.call in "
            "kcaption/layers/transformer.py (lesson 06_transformer)"
        )

    @graded("transformer.kv_cache", lesson="07_decode_and_evaluate", points=3)
    def decode_step(self, inputs, memory, cache):
        """One decoding step with a key/value cache: the layer at one new position.

        `call` on the whole caption so far, read at its last position, gives
        the same output; but `call` re-runs all t + 1 positions through every
        projection, O(t E^2 + t^2 E) per step. The causal mask makes a cache
        exact: no position ever attends to a later one, so the keys and values
        of the earlier positions never change. Keep them, and run only the new
        position: O(E^2) for its projections and O(t E) for its attention.

        Math (inference only: no dropout; P = self.self_attention, h heads of
        d = E / h dimensions; keys, values = cache):
            Self-attention block, the new position only:
                q = inputs P.Wq + P.bq,  k = inputs P.Wk + P.bk,
                v = inputs P.Wv + P.bv                                    (N, 1, E)
                keys = [keys; k],  values = [values; v]  (along time)   (N, t+1, E)
                split q, keys and values into heads                      (N, *, h, d)
                scores[n, i, s] = q[n, i] . keys[n, s, i] / sqrt(d)      (N, h, 1, t+1)
                weights = softmax(scores over s)   (no mask: every key is at or before the query)
                heads[n, i] = sum_s weights[n, i, s] values[n, s, i]     (N, 1, h, d)
                x = self_norm(inputs + (concat(heads) P.Wo + P.bo))      (N, 1, E)
            Cross-attention block, as in `call` (the memory's keys and values
            are projected again at every step: O(L E^2), not cached here):
                x = cross_norm(x + cross_attention(x, memory))
            Feed-forward block, as in `call`:
                x = ffn_norm(x + ffn_output(ffn_hidden(x)))               (N, 1, E)

        Args:
            inputs: (N, 1, E), the new position: its word vector plus its
                positional encoding, or the previous layer's output there.
            memory: (N, L, E), the image features as a sequence.
            cache: the pair (keys, values), each (N, t, E): this layer's
                self-attention keys and values of the t earlier positions,
                already projected (x P.Wk + P.bk, x P.Wv + P.bv); t = 0 at the
                first step, (N, 0, E).

        Returns:
            The pair (x, (keys, values)): the new position's output (N, 1, E),
            and the cache grown by this position, each (N, t+1, E).

        Tools: self.self_attention's weights P.Wq, P.bq, P.Wk, P.bk, P.Wv,
        P.bv, P.Wo, P.bo (each W (E, E), b (E,)), P.num_heads and P.head_dim;
        self.cross_attention (call it as in `call`), self.self_norm,
        self.cross_norm, self.feedforward_hidden, self.feedforward_output,
        self.feedforward_norm.

        Hints:
            - Tools: `ops.matmul`, `ops.concatenate` (on axis 1, time),
              `ops.reshape`, `ops.einsum`, `ops.softmax`, `ops.sqrt`,
              `ops.cast`, `ops.shape` (N and t are tensors in a compiled graph).
            - Split into heads as your MultiHeadAttention does: (N, T, E)
              reshapes to (N, T, h, d), never straight to (N, h, T, d).
            - The query is the new position's alone; the keys and values are
              the whole grown cache, the new position included.
            - Under mixed precision the weights are float32 variables while
              `inputs` is float16: Keras casts them only inside a layer's
              `call`, so cast them yourself with `ops.cast(w, inputs.dtype)`.
        """
        raise NotImplementedError(
            "TODO transformer.kv_cache: implement TransformerDecoderLayer.decode_step in "
            "kcaption/layers/transformer.py (lesson 07_decode_and_evaluate)"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
        }
