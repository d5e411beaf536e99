"""Word embedding: one learned vector per vocabulary entry."""

import keras
from keras import ops

from kcaption.backprop import wiring
from kcaption.steps import graded
from kcaption.validation import check_positive_ints


@keras.saving.register_keras_serializable(package="kcaption")
class WordEmbedding(keras.layers.Layer):
    """Maps token ids to learned word vectors.

    Args:
        vocab_size: number of distinct tokens V (ids are 0..V-1).
        embed_dim: size D of each word vector.
        mask_zero: if True, id 0 (`<NULL>`, padding) is masked out for the
            layers that follow (an RNN then skips those steps).
        manual_backward: if True, training backpropagates through this layer with
            your lesson-08 `word_embedding_backward` (kcaption/backprop) instead of autodiff.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: int tensor of token ids, shape (N, T) (any shape works).

    Returns:
        Float tensor (N, T, D): row `inputs[n, t]` of `W_embed`.

    Masking:
        With `mask_zero=True` the output carries the mask `inputs != 0`.

    Example:
        >>> embed = WordEmbedding(vocab_size=10, embed_dim=4)
        >>> embed(np.array([[1, 5, 2, 0]])).shape
        TensorShape([1, 4, 4])

    References:
        CS231n assignment 3, `word_embedding_forward`;
        `keras.layers.Embedding`.
    """

    def __init__(self, vocab_size, embed_dim, mask_zero=False, manual_backward=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(vocab_size=vocab_size, embed_dim=embed_dim)
        wiring.check_manual_backward(manual_backward)
        self.manual_backward = manual_backward
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.mask_zero = mask_zero
        self.supports_masking = mask_zero

    def build(self, input_shape):
        # randn(V, D) / sqrt(V), as in the course notes.
        self.W_embed = self.add_weight(
            name="W_embed",
            shape=(self.vocab_size, self.embed_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / self.vocab_size**0.5),
        )

    @wiring.word_embedding
    @graded("embedding.forward", lesson="02_embedding_and_loss", points=2)
    def call(self, inputs):
        """Look up the word vector of every token id.

        Math: out[n, t, :] = W_embed[inputs[n, t], :]

        Shapes: inputs (N, T) int, self.W_embed (V, D) -> out (N, T, D).

        Hints:
        - Tools: `ops.take` gathers slices of a tensor along one axis (read what
          it does without an `axis`); `ops.one_hot` with `ops.matmul` is another
          way to pick rows; `ops.cast` changes a dtype.
        - The ids may arrive as floats or int64 (NumPy, tf.data), while a gather
          wants integer indices.
        - The rows come out as stored: no scaling, and in W_embed's own dtype (a
          float64 layer gives float64 vectors, without a float32 round trip).
        - No loop over N or T is needed.
        """
        raise NotImplementedError(
            "TODO embedding.forward: implement WordEmbedding.call in kcaption/layers/embedding.py "
            "(lesson 02_embedding_and_loss)"
        )

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "mask_zero": self.mask_zero,
            "manual_backward": self.manual_backward,
        }
