"""What every captioner shares: greedy sampling run as one compiled graph, and its encoder in the config."""

import keras


class Captioner(keras.Model):
    """Base class of the captioners (`CaptioningRNN`, `CaptioningTransformer`).

    A subclass builds its layers, keeps its `ImageEncoder` (or None) as
    `self.encoder`, and implements `_sample(images_or_features, max_length)`
    with `kcaption.decoding.greedy_search`; this class runs that loop eagerly
    or as one compiled `tf.function`, and saves the encoder with the model.

    Args:
        encoder: an `ImageEncoder`, or None when the model is fed features.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self._compiled_sample = None

    def _sample(self, images_or_features, max_length):
        raise NotImplementedError(f"{type(self).__name__} must implement _sample().")

    def sample(self, images_or_features, max_length=16, compiled=True):
        """Greedy captions as token ids (N, max_length), `<NULL>`-padded after `<END>`.

        Args:
            images_or_features: what `call` takes first: images or features.
            max_length: number of words generated (`<END>` included).
            compiled: run the loop as one compiled `tf.function` graph (fast),
                or step by step in eager mode (for debugging).
        """
        if not compiled:
            return self._sample(images_or_features, max_length)
        if self._compiled_sample is None:
            import tensorflow as tf

            self._compiled_sample = tf.function(self._sample, reduce_retracing=True)
        return self._compiled_sample(images_or_features, max_length)

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
