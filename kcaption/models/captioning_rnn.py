"""The recurrent captioner: image features -> first state -> RNN/LSTM (or a stack) over the words -> next-word logits."""

import keras
from keras import ops

from kcaption.backprop.wiring import check_manual_backward
from kcaption.decoding import START
from kcaption.layers import LSTMCell, RNNCell, WordEmbedding
from kcaption.layers.attention import AttentionLSTM, AttentionLSTMCell, attention_initial_state
from kcaption.models.captioner import Captioner
from kcaption.steps import graded
from kcaption.validation import check_positive_ints

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "attn": AttentionLSTMCell}
INITIAL_CELLS = ("zeros", "h0")  # how the LSTM's first cell state c0 starts
INJECTS = ("init", "pre")  # where the image enters: the first state, or the first input word


@keras.saving.register_keras_serializable(package="kcaption")
class CaptioningRNN(Captioner):
    """Show-and-Tell style captioner with a vanilla RNN or an LSTM decoder.

    With `cell_type="attn"` (lesson 05) it is a Show-Attend-and-Tell captioner:
    the encoder's spatial features are projected to A (N, L, H), the states
    start as h0 = c0 = mean of A over L, and an `AttentionLSTM` attends over A
    at every step (A rides along as a third state).

    The image's pooled features are projected to the first hidden state h0
    (the LSTM's first cell state c0 is zero, or h0 with `initial_cell="h0"`);
    the caption's words are embedded and run through the recurrent layer; a
    dense layer scores the next word at every step.

    Where the image enters (`inject`, the terms of Tanti et al. 2018):
    - "init" (CS231n, the default): the projected image is the first hidden
      state, h0 = W_proj features + b_proj.
    - "pre" (Show and Tell; the NCTU lab's `EncoderCNN` + `DecoderRNN`): the
      image, projected to the word size D and batch-normalised, is the first
      input word, fed from zero states; its output scores no word. Here
      `initial_state` runs that step, so the captions start from the states it
      leaves: the same as feeding [image, words] and dropping the first output.

    Stacked layers (`num_layers`): the cells run one above the other at every
    step (`keras.layers.RNN` over a list of cells), layer l + 1 reading layer
    l's h; the top layer's h is scored. With "init", one projection gives
    num_layers * H values, split into one h0 per layer (the bottom layer's
    first), so that the layers, which play different roles, need not start
    from the same vector; with one layer this is the plain projection to H.
    With "pre" every layer starts from zeros and the image step sets them all.

    Why `initial_cell="h0"`: with c0 = 0 the image reaches the LSTM's memory only
    through the first step's gated, tanh-squashed write, c1 = i * g. With c0 = h0
    it sits in the cell from the start and rides the additive path c = f * c + i * g,
    which carries gradients back to the encoder at every step (lesson 04). On the
    shapes demo that lifted the images captioned with exactly the right objects
    from 40% to 60-69% in the same training time. Show, Attend and Tell (and this
    kit's "attn" captioner) also start c0 from the image.

    Args:
        vocab_size: number of tokens V.
        cell_type: "rnn", "lstm" or "attn".
        embed_dim: word vector size D.
        hidden_dim: hidden state size H.
        encoder: an `ImageEncoder`, or None when the model is fed features (N, C).
        initial_cell: the LSTM's first cell state: "zeros" (c0 = 0, the default,
            as in CS231n) or "h0" (c0 = h0, the projected image, in each layer).
            Only for cell_type="lstm" with inject="init": an RNN has no cell,
            "attn" always starts from the image, and "pre" starts from zeros.
        num_layers: number of stacked recurrent layers (the NCTU lab's
            `num_layers`). Only 1 for cell_type="attn".
        inject: where the image enters: "init" (the first state) or "pre" (the
            first input word). Only "init" for cell_type="attn".
        manual_backward: if True, the word embedding and the RNN/LSTM cells
            backpropagate with your lesson-08 backward steps, and `compile_captioner`
            gives the loss `temporal_softmax_loss_backward` (the Dense layers and
            Keras's RNN loop keep autodiff). Not for cell_type="attn".
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(images_or_features, captions_in)`: images (N, S, S, 3) in [0, 1]
            (with an encoder) or features (N, C) (without), and the caption's
            tokens fed in, int (N, T), starting with `<START>`.
        training: passed to the encoder.

    Returns:
        Logits (N, T, V): the score of every word as the next one (teacher forcing).

    Masking:
        Steps whose input token is `<NULL>` (padding) are masked: the state is
        carried over, so padding never changes the words before it.

    Example:
        >>> model = CaptioningRNN(vocab_size=30, cell_type="lstm", encoder=ImageEncoder())
        >>> model((images, captions_in)).shape     # (N, T, 30)
        >>> model.sample(images, max_length=16)    # (N, 16) token ids
        >>> # The NCTU lab's DecoderRNN(embed_size=256, hidden_size=512, vocab_size, num_layers=2):
        >>> CaptioningRNN(vocab_size, "lstm", embed_dim=256, hidden_dim=512, num_layers=2, inject="pre")

    References:
        Vinyals et al., "Show and Tell" (2015); Karpathy & Fei-Fei, "Deep
        visual-semantic alignments" (2015); Tanti, Gatt & Camilleri, "Where to
        put the image in an image caption generator" (2018); CS231n assignment
        3, `CaptioningRNN`; NCTU's image captioning lab, `DecoderRNN`.
    """

    def __init__(
        self,
        vocab_size,
        cell_type="lstm",
        embed_dim=128,
        hidden_dim=256,
        encoder=None,
        initial_cell="zeros",
        num_layers=1,
        inject="init",
        manual_backward=False,
        **kwargs,
    ):
        super().__init__(encoder=encoder, **kwargs)
        if cell_type not in CELLS:
            raise ValueError(f"`cell_type` must be one of {sorted(CELLS)}. Received: cell_type={cell_type!r}")
        if initial_cell not in INITIAL_CELLS:
            raise ValueError(f"`initial_cell` must be one of {INITIAL_CELLS}. Received: initial_cell={initial_cell!r}")
        if initial_cell != "zeros" and cell_type != "lstm":
            raise ValueError(
                "`initial_cell` sets the LSTM's first cell state: only cell_type='lstm' takes it (an RNN has no "
                f"cell; 'attn' always starts from the image). Received: initial_cell={initial_cell!r}, "
                f"cell_type={cell_type!r}"
            )
        if inject not in INJECTS:
            raise ValueError(f"`inject` must be one of {INJECTS}. Received: inject={inject!r}")
        check_positive_ints(vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        check_manual_backward(manual_backward)
        if manual_backward and cell_type == "attn":
            raise ValueError(
                "Lesson 08 writes the backward steps of the RNN and LSTM cells, not of the attention LSTM: "
                f"manual_backward=True takes cell_type='rnn' or 'lstm'. Received: cell_type={cell_type!r}"
            )
        if cell_type == "attn" and (num_layers != 1 or inject != "init"):
            raise ValueError(
                "cell_type='attn' is one attention LSTM layer started from the image: it takes only "
                f"num_layers=1 and inject='init'. Received: cell_type={cell_type!r}, num_layers={num_layers}, "
                f"inject={inject!r}"
            )
        if inject == "pre" and initial_cell != "zeros":
            raise ValueError(
                "With inject='pre' the image is the first input word and the states start from zeros: "
                f"`initial_cell` must be 'zeros'. Received: initial_cell={initial_cell!r}, inject={inject!r}"
            )
        self.vocab_size = vocab_size
        self.cell_type = cell_type
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.initial_cell = initial_cell
        self.num_layers = num_layers
        self.inject = inject
        self.manual_backward = manual_backward
        if inject == "pre":
            # The image as a word vector (N, D), batch-normalised as in the NCTU lab's encoder
            # (PyTorch's BatchNorm1d(momentum=0.01, eps=1e-5) is Keras's momentum=0.99, epsilon=1e-5).
            # Under tf.distribute, `kcaption.distribute.synchronize_batch_norm` makes it use the global batch.
            norm = keras.layers.BatchNormalization(epsilon=1e-5, name="norm")
            self.feature_projection = keras.Sequential(
                [keras.layers.Dense(embed_dim, name="dense"), norm], name="feature_projection"
            )
        else:
            self.feature_projection = keras.layers.Dense(num_layers * hidden_dim, name="feature_projection")
        self.embedding = WordEmbedding(vocab_size, embed_dim, manual_backward=manual_backward, name="embedding")
        if cell_type == "attn":
            self.rnn = AttentionLSTM(hidden_dim, name="rnn")
        elif num_layers == 1:
            cell = CELLS[cell_type](hidden_dim, manual_backward=manual_backward, name="cell")
            self.rnn = keras.layers.RNN(cell, return_sequences=True, name="rnn")
        else:
            cells = [CELLS[cell_type](hidden_dim, manual_backward=manual_backward, name=f"cell_{layer}")
                     for layer in range(num_layers)]
            stack = keras.layers.StackedRNNCells(cells, name="cells")  # cell_0 reads the words, the top one is scored
            self.rnn = keras.layers.RNN(stack, return_sequences=True, name="rnn")
        # Logits in float32 under mixed precision, for a stable softmax.
        self.output_projection = keras.layers.Dense(vocab_size, dtype="float32", name="output_projection")

    def encode(self, images_or_features, training=None):
        """Pooled image features (N, C), spatial (N, L, C) for "attn": images go through the encoder,
        features (of rank 2, or 3 for "attn") are used as given."""
        x = images_or_features
        if len(x.shape) != 4:
            return x
        if self.encoder is None:
            raise ValueError(
                "CaptioningRNN got images but has no encoder: pass `encoder=ImageEncoder()` or feed "
                f"features. Received: input shape={tuple(x.shape)}"
            )
        pooled, spatial = self.encoder(x, training=training)
        return spatial if self.cell_type == "attn" else pooled

    def initial_state(self, h0):
        """The recurrent layer's first state, from the projected image `h0`.

        With inject="init": [h0] for the RNN, [h0, c0] for the LSTM (c0 = 0, or
        h0 with `initial_cell="h0"`); for a stack, h0 (N, num_layers * H) is
        split into one (N, H) per layer and the states are one such list per
        layer, layer 0 first.

        With inject="pre", `h0` is the image as a word vector (N, D): the cells
        take it as their input from zero states, and the states of that step
        are returned (its output is not scored).

        For "attn" the projection is of the spatial features, A (N, L, H), and
        the state is [mean of A, mean of A, A].
        """
        if self.cell_type == "attn":
            return attention_initial_state(h0)
        if self.inject == "pre":
            _, state = self.rnn.cell(h0, self.rnn.get_initial_state(ops.shape(h0)[0]))
            return state
        if self.num_layers == 1:
            return self._layer_state(h0)
        return [self._layer_state(h) for h in ops.split(h0, self.num_layers, axis=-1)]  # num_layers x (N, H)

    def _layer_state(self, h0):
        """One layer's first state from its h0 (N, H): [h0], or [h0, c0] for the LSTM."""
        if self.cell_type == "lstm":
            return [h0, h0 if self.initial_cell == "h0" else ops.zeros_like(h0)]
        return [h0]

    @graded("captioner.forward", lesson="03_rnn", points=4)
    def call(self, inputs, training=None):
        """Teacher-forced forward pass: logits of the next word at every step.

        Math (the data flow):
            features = the encoder's output for the images (or the features)   (N, C)
            h0       = W_proj features + b_proj                                (N, H)
            state    = the cell's first states, made from h0                    [h0] or [h0, c0]
            x        = the word vectors of captions_in                          (N, T, D)
            mask     = (captions_in != <NULL>), id 0                            (N, T) bool
            h        = the cell run over x from `state`, a masked step keeping
                       the previous state                                       (N, T, H)
            logits   = W_out h + b_out, at every step                           (N, T, V)

        Shapes: inputs = (images (N, S, S, 3) or features (N, C), captions_in (N, T) int)
        -> logits (N, T, V).

        Hints:
        - Tools, all built in `__init__` (only call them): `self.encode`,
          `self.feature_projection`, `self.initial_state`, `self.embedding`,
          `self.rnn` (a `keras.layers.RNN`: read which call arguments take a
          first state and a mask), `self.output_projection`; `ops.not_equal`.
        - `inputs` is a pair; pass `training` to the sub-layers that take it.
        - Logits, not probabilities: the loss applies the softmax.
        """
        raise NotImplementedError(
            "TODO captioner.forward: implement CaptioningRNN.call in "
            "kcaption/models/captioning_rnn.py (lesson 03_rnn)"
        )

    def next_logits(self, tokens, state):
        """One decoding step: the words `tokens` (N,) in, next-word logits (N, V) and the new state out
        (for a stack, the top layer's h is scored and every layer's state comes back)."""
        x = self.embedding(tokens)  # (N, D)
        h, state = self.rnn.cell(x, state)  # (N, H)
        return self.output_projection(h), state

    def start_decoding(self, images_or_features):
        """(next_logits, state, start_tokens) for `kcaption.decoding`: the cell's first state, from the image
        (for "attn" the state also holds the projected features A, row by row, as beam search needs)."""
        h0 = self.feature_projection(self.encode(images_or_features, training=False))  # what initial_state takes
        start = ops.full((ops.shape(h0)[0],), START, dtype="int32")
        return self.next_logits, self.initial_state(h0), start

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "cell_type": self.cell_type,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "initial_cell": self.initial_cell,
            "num_layers": self.num_layers,
            "inject": self.inject,
            "manual_backward": self.manual_backward,
        }
