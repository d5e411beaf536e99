"""Captioners and the image encoder, built by name with `build_captioner`."""

from kcaption.models.captioning_rnn import CaptioningRNN
from kcaption.models.captioning_transformer import CaptioningTransformer
from kcaption.models.encoder import ImageEncoder

# name -> function(vocab_size, **kwargs) returning an (unbuilt) captioner.
CAPTIONERS = {
    "rnn": lambda vocab_size, **kw: CaptioningRNN(vocab_size, cell_type="rnn", **kw),
    "lstm": lambda vocab_size, **kw: CaptioningRNN(vocab_size, cell_type="lstm", **kw),
    "attn": lambda vocab_size, **kw: CaptioningRNN(vocab_size, cell_type="attn", **kw),
    # hidden_dim (the recurrent models' state size) sizes the transformer's feed-forward blocks.
    "transformer": lambda vocab_size, hidden_dim=256, **kw: CaptioningTransformer(
        vocab_size, feedforward_dim=hidden_dim, **kw
    ),
}

# The captioners that read the encoder's pooled vector; the others read only its grid, so their
# encoder builds no pooled-vector normalisation (weights that would never train).
POOLED = ("rnn", "lstm")


def build_captioner(name, vocab_size, *, backbone="small_cnn", image_size=64, encoder=None, **kwargs):
    """A captioner by name, with its image encoder.

    Args:
        name: one of `CAPTIONERS` ("rnn", "lstm", ...).
        vocab_size: number of tokens V.
        backbone: the `ImageEncoder` backbone ("small_cnn" or a keras.applications name),
            or None for a captioner fed precomputed features. Not used with `encoder`.
        image_size: side of the input images. Not used with `encoder`.
        encoder: an `ImageEncoder` to use as is (e.g. the frozen one a feature cache was
            made with, so that the model trained on its features captions raw images), or
            None to build one from `backbone` and `image_size`.
        **kwargs: passed to the captioner: embed_dim, hidden_dim, ...; for "rnn" and
            "lstm" also num_layers and inject ("init" or "pre", see `CaptioningRNN`);
            for "transformer", num_layers is its number of decoder blocks.
    """
    if name not in CAPTIONERS:
        raise ValueError(f"Unknown captioner; expected one of {sorted(CAPTIONERS)}. Received: name={name!r}")
    if encoder is None and backbone is not None:
        encoder = ImageEncoder(backbone, image_size=image_size, pool_norm=name in POOLED)
    return CAPTIONERS[name](vocab_size, encoder=encoder, **kwargs)

__all__ = ["CAPTIONERS", "CaptioningRNN", "CaptioningTransformer", "ImageEncoder", "build_captioner"]
