"""The transformer decoder layer of the captioner, and its causal mask.

A caption is written left to right, so while training on whole captions at
once (teacher forcing) each word may only look at the words before it: the
causal mask. The image comes in through cross-attention to a memory sequence
of image features. Post-norm residual blocks, as in the original paper and
keras_hub's TransformerDecoder (normalize_first=False).
"""

import keras
from keras import ops

from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.validation import check_positive_ints


def causal_mask(length):
    """The (T, T) boolean mask that lets position t attend to positions <= t.

    For length 4 (row = query position, column = key position; 1 = may attend):

        [[1, 0, 0, 0],
         [1, 1, 0, 0],
         [1, 1, 1, 0],
         [1, 1, 1, 1]]

    Args:
        length: T, a Python int or a scalar tensor.

    Returns:
        A boolean (T, T) tensor, True on and below the diagonal.
    """
    i = ops.arange(length)
    return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)


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
        # get_weights() lists line up; epsilon as there too.
        self.self_attention = MultiHeadAttention(embed_dim, num_heads, dropout, name="self_attention")
        self.self_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_norm")
        self.cross_attention = MultiHeadAttention(embed_dim, num_heads, dropout, name="cross_attention")
        self.cross_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="cross_norm")
        self.feedforward_hidden = keras.layers.Dense(feedforward_dim, activation="relu", name="ffn_hidden")
        self.feedforward_output = keras.layers.Dense(embed_dim, name="ffn_output")
        self.feedforward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="ffn_norm")
        self.dropout_layer = keras.layers.Dropout(dropout)

    def build(self, inputs_shape, memory_shape):
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_norm.build(inputs_shape)
        self.cross_attention.build(inputs_shape, memory_shape)
        self.cross_norm.build(inputs_shape)
        self.feedforward_hidden.build(inputs_shape)
        self.feedforward_output.build((*inputs_shape[:-1], self.feedforward_dim))
        self.feedforward_norm.build(inputs_shape)

    def call(self, inputs, memory, padding_mask=None, return_attention_scores=False, training=None):
        T = ops.shape(inputs)[1]
        mask = causal_mask(T)[None]  # (1, T, T)
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

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
        }
