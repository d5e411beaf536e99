"""Sinusoidal positional encoding: tells a transformer where each token is.

Attention is a weighted sum, blind to order: "red left of blue" and "blue left
of red" would look the same. Adding a fixed pattern of sines and cosines of
different frequencies to each position's embedding gives every position a
unique, smoothly varying signature (Vaswani et al., 2017, section 3.5).
"""

import keras
from keras import ops  # noqa: F401 (for your code in call)

from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@keras.saving.register_keras_serializable(package="kcaption")
class PositionalEncoding(keras.layers.Layer):
    """Adds the sine/cosine position encoding to a sequence, then dropout.

    Args:
        max_len: the longest sequence the layer accepts.
        embed_dim: D, the embedding size (even).
        dropout: dropout rate applied after the addition, in training only.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (N, T, D) token embeddings, T <= max_len.
        training: dropout is active only when True.

    Returns:
        (N, T, D): inputs + PE[:T], then dropout. PE itself equals
        `keras_hub.layers.SinePositionEncoding()` on the same inputs.

    Masking:
        None; padded positions get an encoding too (attention masks them).

    Example:
        >>> pe = PositionalEncoding(max_len=16, embed_dim=32, dropout=0.1)
        >>> y = pe(embeddings)          # (N, T, 32)

    References:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.5;
        keras_hub.layers.SinePositionEncoding.
    """

    def __init__(self, max_len, embed_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(max_len=max_len)
        if not isinstance(embed_dim, int) or embed_dim <= 0 or embed_dim % 2:
            raise ValueError(
                f"`embed_dim` must be a positive even int. Received: embed_dim={embed_dim!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.max_len = max_len
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        length = input_shape[-2]
        if length is not None and length > self.max_len:
            raise ValueError(
                f"PositionalEncoding(max_len={self.max_len}) got a sequence of {length} tokens. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    @graded("transformer.positional_encoding", lesson="06_transformer", points=2)
    def call(self, inputs, training=None):
        """Add the sinusoidal encoding to `inputs`, then apply dropout.

        Math (position t = 0..T-1, dimension j = 0..D-1, D = embed_dim):
            angle[t, j] = t * 10000 ** (-(2 * (j // 2)) / D)
            PE[t, j] = sin(angle[t, j])   if j is even
            PE[t, j] = cos(angle[t, j])   if j is odd
            output = dropout(inputs + PE)

        So dimensions 2k and 2k+1 share one frequency: sin on 2k, cos on 2k+1.

        Args:
            inputs: (N, T, D).
            training: passed to `self.dropout_layer`.

        Returns:
            (N, T, D).

        Hints:
            - Tools: `ops.shape` (T is a tensor inside a compiled graph),
              `ops.arange`, `ops.cast`, `ops.power` (or `ops.exp` and `ops.log`),
              `ops.sin`, `ops.cos`, `ops.where` (picks, element by element, from
              two tensors), and `//`, `%` on integer tensors.
            - Broadcasting builds the (T, D) table at once: the positions as a
              column, the dimensions as a row. Compute it in inputs.dtype.
            - PE (T, D) broadcasts over the batch; `self.dropout_layer` does the
              dropout.
        """
        raise NotImplementedError(
            "TODO transformer.positional_encoding: implement PositionalEncoding.call in "
            "kcaption/layers/positional.py (lesson 06_transformer)"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "max_len": self.max_len,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
        }
