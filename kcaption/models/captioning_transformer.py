"""The transformer captioner: image features as a memory, a causal decoder over the words."""

import warnings

import keras
from keras import ops  # noqa: F401 (for your code in call)

from kcaption.decoding import START
from kcaption.layers import WordEmbedding
from kcaption.layers.positional import PositionalEncoding
from kcaption.layers.transformer import TransformerDecoderLayer
from kcaption.models.captioner import Captioner
from kcaption.steps import graded, implemented
from kcaption.validation import check_positive_ints


@keras.saving.register_keras_serializable(package="kcaption")
class CaptioningTransformer(Captioner):
    """A transformer decoder that writes a caption while attending to the image.

    The encoder's spatial features (N, L, C) are projected to a memory of L
    vectors of size E; the caption's tokens are embedded, given their
    positions, and run through a stack of decoder layers (causal
    self-attention, cross-attention to the memory, feed-forward); a dense
    layer scores the next word at every position.

    Args:
        vocab_size: number of tokens V.
        embed_dim: E, the model width.
        num_heads: attention heads per layer.
        num_layers: decoder layers.
        feedforward_dim: hidden width of each feed-forward block.
        dropout: dropout rate (positional encoding, attention, residual blocks).
        max_length: the longest token sequence fed in (`<START>` included).
        encoder: an `ImageEncoder`, or None when the model is fed features.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        inputs: `(images_or_features, captions_in)`: images (N, S, S, 3) in
            [0, 1] (through the encoder), or features (N, L, C) or (N, C)
            (used as they are); and the tokens fed in, int (N, T), starting
            with `<START>`.
        training: dropout is active only when True.
        return_attention: also return the last layer's cross-attention,
            averaged over its heads, (N, T, L): where each position looked.

    Returns:
        Logits (N, T, V) (teacher forcing); with `return_attention`, the pair
        (logits, attention).

    Masking:
        A causal mask (position t sees tokens <= t) and a padding mask
        (`<NULL>` tokens are never attended to).

    Example:
        >>> model = CaptioningTransformer(vocab_size=30, encoder=ImageEncoder())
        >>> model((images, captions_in)).shape     # (N, T, 30)
        >>> model.sample(images, max_length=16)    # (N, 16) token ids

    References:
        Vaswani et al., "Attention Is All You Need" (2017); CS231n assignment 3,
        `CaptioningTransformer`; keras_hub.layers.TransformerDecoder.
    """

    def __init__(
        self,
        vocab_size,
        embed_dim=128,
        num_heads=4,
        num_layers=2,
        feedforward_dim=256,
        dropout=0.1,
        max_length=17,
        encoder=None,
        **kwargs,
    ):
        super().__init__(encoder=encoder, **kwargs)
        check_positive_ints(vocab_size=vocab_size, num_layers=num_layers, max_length=max_length)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.feedforward_dim = feedforward_dim
        self.dropout = dropout
        self.max_length = max_length
        self.feature_projection = keras.layers.Dense(embed_dim, name="feature_projection")
        self.embedding = WordEmbedding(vocab_size, embed_dim, name="embedding")
        self.positional_encoding = PositionalEncoding(max_length, embed_dim, dropout, name="positional_encoding")
        self.decoder_layers = [
            TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim, dropout, name=f"decoder_{i}")
            for i in range(num_layers)
        ]
        # Logits in float32 under mixed precision, for a stable softmax.
        self.output_projection = keras.layers.Dense(vocab_size, dtype="float32", name="output_projection")

    def encode(self, images_or_features, training=None):
        """Spatial features (N, L, C): images go through the encoder, features are used as given."""
        x = images_or_features
        if len(x.shape) == 4:
            if self.encoder is None:
                raise ValueError(
                    "CaptioningTransformer got images but has no encoder: pass `encoder=ImageEncoder()` "
                    f"or feed features (N, L, C). Received: input shape={tuple(x.shape)}"
                )
            _, spatial = self.encoder(x, training=training)
            return spatial
        if len(x.shape) == 2:
            return x[:, None, :]  # one pooled vector: a memory of length 1
        return x

    @graded("transformer.captioner", lesson="06_transformer", points=3)
    def call(self, inputs, training=None, return_attention=False):
        """Teacher-forced forward pass: logits of the next word at every position.

        Math (the data flow):
            memory  = W_proj (the encoder's features of the images)      (N, L, E)
            x       = word vectors of captions_in + positional encoding   (N, T, E)
            padding_mask = (captions_in != <NULL>), id 0                  (N, T) bool
            x       = each decoder layer in turn, over x and memory, with
                      the padding mask                                    (N, T, E)
            logits  = W_out x + b_out                                     (N, T, V)
            attention = the last layer's cross-attention weights
                        (N, heads, T, L), averaged over the heads         (N, T, L)

        Shapes: inputs = (images (N, S, S, 3) or features, captions_in (N, T) int)
        -> logits (N, T, V), or (logits, attention) when `return_attention`.

        Hints:
        - Tools, all built in `__init__` (only call them, in the order above):
          `self.encode`, `self.feature_projection`, `self.embedding`,
          `self.positional_encoding`, `self.decoder_layers` (a list; each layer's
          call arguments are in `TransformerDecoderLayer.call`),
          `self.output_projection`; `ops.not_equal`, `ops.mean`.
        - The decoder layers apply the causal mask themselves.
        - `inputs` is a pair; pass `training` to every sub-layer that takes it.
        """
        raise NotImplementedError(
            "TODO transformer.captioner: implement CaptioningTransformer.call in "
            "kcaption/models/captioning_transformer.py (lesson 06_transformer)"
        )

    def start_decoding(self, images_or_features, use_cache=None):
        """What a decoder of `kcaption.decoding` needs: (next_logits, state, start_tokens).

        The image is encoded once; every tensor that belongs to one image is in
        the state, row by row (a beam search repeats and reorders its rows),
        and `next_logits(tokens, state) -> (logits (N, V), state)` holds none.

        With `use_cache`, each step runs only the new word through the layers
        (`TransformerDecoderLayer.decode_step`), over the cached keys and values
        of the earlier words: the state is [memory (N, L, E), keys and values
        of each layer (N, t, E)]. Without it, each step re-runs the whole
        prefix, O(t) times the work at step t: the state is [features, the
        tokens fed so far (N, t)].

        Args:
            images_or_features: what `call` takes first: images or features.
            use_cache: decode with the key/value cache (True) or re-run the
                prefix (False). None: the cache once `decode_step` (graded step
                transformer.kv_cache, lesson 07) is implemented, else re-run.

        Returns:
            (next_logits, state, start_tokens), start_tokens int32 (N,) all `<START>`.
        """
        if use_cache is None:
            use_cache = implemented("transformer.kv_cache")
        features = self.encode(images_or_features, training=False)  # (N, L, C), computed once
        batch = ops.shape(features)[0]
        start_tokens = ops.full((batch,), START, dtype="int32")
        if not self.built:
            self((features, start_tokens[:, None]), training=False)
        if not use_cache:
            return self._next_logits_rerun, [features, ops.zeros((batch, 0), "int32")], start_tokens
        memory = self.feature_projection(features)  # (N, L, E)
        # Every position's encoding, once: the layer adds PE to zeros (training=False: no dropout).
        positions = self.positional_encoding(
            ops.zeros((1, self.max_length, self.embed_dim), self.compute_dtype), training=False
        )  # (1, max_length, E)

        def next_logits(tokens, state):
            memory, *cache = state
            t = ops.shape(cache[0])[1]  # the positions cached so far: this word's position
            x = self.embedding(tokens[:, None]) + positions[:, t : t + 1]  # (N, 1, E)
            grown = []
            with warnings.catch_warnings():
                # At t = 0 the softmax is over one key: exactly 1, but Keras warns about an axis of size 1.
                warnings.filterwarnings("ignore", message=r"You are using a softmax over axis .* has size 1")
                for layer, keys, values in zip(self.decoder_layers, cache[0::2], cache[1::2]):
                    x, (keys, values) = layer.decode_step(x, memory, (keys, values))  # (N, 1, E), (N, t+1, E)
                    grown += [keys, values]
            return self.output_projection(x)[:, 0], [memory, *grown]  # (N, V)

        empty = ops.zeros((batch, 0, self.embed_dim), memory.dtype)  # no position cached yet
        return next_logits, [memory, *[empty, empty] * self.num_layers], start_tokens

    def _next_logits_rerun(self, tokens, state):
        features, prefix = state
        prefix = ops.concatenate([prefix, ops.expand_dims(tokens, 1)], axis=1)  # (N, t+1)
        logits = self((features, prefix), training=False)  # (N, t+1, V)
        return logits[:, -1], [features, prefix]

    def sample(self, images_or_features, max_length=16, compiled=True, use_cache=None, **decoding):
        """Captions as token ids (N, max_length); see `Captioner.sample` and `start_decoding`'s `use_cache`.

        `max_length` is at most `self.max_length` - 1, since `<START>` takes a position.
        """
        if max_length >= self.max_length:
            raise ValueError(
                f"This model encodes at most {self.max_length} positions, <START> included. "
                f"Received: max_length={max_length}"
            )
        if use_cache is None:  # decided here, so that a compiled decoder is not kept past the step's change
            use_cache = implemented("transformer.kv_cache")
        return super().sample(images_or_features, max_length, compiled, use_cache=use_cache, **decoding)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
            "max_length": self.max_length,
        }
