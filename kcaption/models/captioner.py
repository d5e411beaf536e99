"""What every captioner shares: grouped training steps, decoding (greedy, beam search, sampling) run as
one compiled graph, and its encoder in the config."""

import functools
import random

import keras
from keras import ops


class Captioner(keras.Model):
    """Base class of the captioners (`CaptioningRNN`, `CaptioningTransformer`).

    A subclass builds its layers, keeps its `ImageEncoder` (or None) as
    `self.encoder`, and implements `encode(images_or_features)` (images go
    through the encoder, features come back as given, in the form `call` takes
    them) and `start_decoding(images_or_features)`, what the decoders of
    `kcaption.decoding` run; this class runs greedy search, beam search or
    sampling over it, eagerly or as one compiled `tf.function`, and saves the
    encoder with the model.

    Grouped batches: `fit` and `evaluate` also take batches whose captions are
    grouped by image, `((images (N, S, S, 3), captions_in (N, G, T)), captions_out
    (N, G, T))` (`make_dataset(captions="grouped")`, a tf.data input). Each image
    is then encoded once for its G captions, which are scored as N * G ordinary
    examples (the loss is their mean, as for ungrouped batches). A training step
    of the small CNN costs ~3.6x that of the LSTM decoder per example, so this
    is ~2.7x cheaper than repeating each image for each caption. The Keras
    captioning example trains the same way; here it is a `train_step` override
    ("Customizing what happens in `fit()`", TensorFlow backend).

    What it was trained on: `kcaption train` sets `trained_on`, a dict saved
    with the model, e.g. `{"model": "lstm", "data": "shapes", "image_size": 64,
    "vocabulary": {"size": 31, "sha256": "..."}}`, so that `load_run` can refuse
    a vocabulary that is not the model's and `kcaption caption` can warn about
    images unlike the training images.

    Args:
        encoder: an `ImageEncoder`, or None when the model is fed features.
        trained_on: None, or a JSON-serialisable dict (see above).
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, encoder=None, trained_on=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.trained_on = None if trained_on is None else dict(trained_on)
        self._compiled_sample = {}

    def fit(self, x=None, y=None, *args, shuffle=None, **kwargs):
        """`keras.Model.fit`, with `shuffle` off by default for a tf.data input.

        A `tf.data.Dataset` shuffles itself (`make_dataset(shuffle=True)`
        reshuffles every epoch); Keras cannot shuffle it and warns that its
        default `shuffle=True` is ignored. Other inputs keep Keras's default.
        """
        if shuffle is None:
            import tensorflow as tf

            shuffle = not isinstance(x, tf.data.Dataset)
        return super().fit(x, y, *args, shuffle=shuffle, **kwargs)

    def encode(self, images_or_features, training=None):
        raise NotImplementedError(f"{type(self).__name__} must implement encode().")

    def train_step(self, data):
        if not _grouped(data):
            return self._step_logs(super().train_step(data))
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, targets, logits = self._grouped_loss(data, training=True)
            scaled = self.optimizer.scale_loss(loss)  # mixed precision: the loss-scaled gradients
        weights = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        return self._step_logs(self._update_metrics(loss, targets, logits))

    def test_step(self, data):
        if not _grouped(data):
            return self._step_logs(super().test_step(data))
        return self._step_logs(self._update_metrics(*self._grouped_loss(data, training=False)))

    def _step_logs(self, logs):
        # Across workers (MultiWorkerMirroredStrategy) Keras 3.15 averages a step's logs over
        # axis 0, which a scalar has not (tensorflow/tensorflow#72388): give each one that axis.
        # The epoch's logs are read from the metrics themselves, as scalars.
        import tensorflow as tf

        strategy = self.distribute_strategy
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
            return {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # A model made in a tf.distribute strategy's scope is built before fit or evaluate
        # runs, by calling it on a first batch's x (Keras's TensorFlow trainer). Two changes
        # to Keras's way: the batch is the first replica's (Keras averages the replicas'
        # batches, which MultiWorkerMirroredStrategy cannot do for a nested batch), and a
        # grouped batch is shown as its first captions, the layout `call` takes.
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(self._first_replica, next(batches))
                break
        if _grouped(data_batch):
            (images, captions_in), captions_out = data_batch
            data_batch = ((images, captions_in[:, 0]), captions_out[:, 0])
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _first_replica(self, value):
        return self.distribute_strategy.experimental_local_results(value)[0]

    def _grouped_loss(self, data, training):
        """Encode N images once, score their N * G captions: the loss, targets (N*G, T), logits (N*G, T, V)."""
        (images, captions_in), captions_out = data
        per_image = captions_in.shape[1]
        features = ops.repeat(self.encode(images, training=training), per_image, axis=0)
        captions_in = ops.reshape(captions_in, (-1, captions_in.shape[-1]))  # image-major, as repeat
        targets = ops.reshape(captions_out, (-1, captions_out.shape[-1]))
        logits = self((features, captions_in), training=training)
        return self.compute_loss(y=targets, y_pred=logits, training=training), targets, logits

    def _update_metrics(self, loss, targets, logits):
        replicas = self.distribute_strategy.num_replicas_in_sync
        for metric in self.metrics:
            if metric.name == "loss":  # this replica's mean: the loss divided it by the replicas (see the loss)
                metric.update_state(loss * replicas, sample_weight=ops.shape(targets)[0])
            else:
                metric.update_state(targets, logits)
        return self.get_metrics_result()

    def start_decoding(self, images_or_features):
        """What a decoder of `kcaption.decoding` runs: `(next_logits, state, start_tokens)`.

        `next_logits(tokens (N,), state) -> (logits (N, V), state)` is one
        decoding step; the state holds everything that belongs to one image,
        row by row (beam search repeats and reorders its rows), and
        start_tokens are N `<START>`s.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement start_decoding().")

    def sample(self, images_or_features, max_length=16, compiled=True, *, beam_width=1, length_penalty=0.0,
               temperature=None, top_k=None, top_p=None, seed=None, jit_compile=False, **decoder_options):
        """Captions as token ids (N, max_length), `<NULL>`-padded after `<END>`: greedy, beam search or sampled.

        Args:
            images_or_features: what `call` takes first: images or features.
            max_length: number of words generated (`<END>` included).
            compiled: run the loop as one compiled `tf.function` graph (fast),
                or step by step in eager mode (for debugging).
            beam_width: k > 1: beam search with k beams (`kcaption.decoding.beam_search`).
            length_penalty: beam search's alpha (GNMT's length penalty; 0: by log-probability).
            temperature, top_k, top_p: any of them: sample the captions
                (`kcaption.decoding.sample_search`) instead of searching.
            seed: sampling's seed: the same seed gives the same captions (None: a new one per call).
            jit_compile: compile the loop with XLA too. On a CPU it decodes the
                transformer ~7x faster than plain graph mode at batch 1 (fewer
                per-op overheads), but it compiles once per input shape (the
                last, smaller batch of an evaluation again) and takes minutes for
                the attention LSTM's unrolled loop; so it is off by default.
            **decoder_options: the model's own decoding options (the transformer's `use_cache`).
        """
        sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        sampled = any(value is not None for value in sampling.values())
        if sampled and beam_width != 1:
            raise ValueError(f"Pass beam_width or sampling options (temperature, top_k, top_p), not both. "
                             f"Received: beam_width={beam_width!r}, {sampling}")
        if seed is not None and not sampled:
            raise ValueError(f"`seed` is for sampling (temperature, top_k, top_p); greedy and beam search are "
                             f"deterministic. Received: seed={seed!r}")
        decoding = {"max_length": max_length, "beam_width": beam_width, "length_penalty": length_penalty,
                    **sampling, **decoder_options}
        if sampled and seed is None:
            seed = random.randrange(2**31 - 1)  # a new draw per call; a tensor, so no retracing
        seed = ops.convert_to_tensor(0 if seed is None else seed, "int64")
        if not compiled:
            return self._decode(images_or_features, seed, **decoding)
        # One graph per input rank (images, pooled or spatial features) and decoding: `reduce_retracing` would
        # relax the shapes of a model fed images, then features, to an unknown rank.
        key = (len(images_or_features.shape), jit_compile, *sorted(decoding.items()))
        if key not in self._compiled_sample:
            import tensorflow as tf

            self._compiled_sample[key] = tf.function(functools.partial(self._decode, **decoding),
                                                     reduce_retracing=not jit_compile, jit_compile=jit_compile)
        return self._compiled_sample[key](images_or_features, seed)

    def _decode(self, images_or_features, seed, max_length, beam_width, length_penalty, temperature, top_k, top_p,
                **decoder_options):
        from kcaption.decoding import beam_search, greedy_search, sample_search

        next_logits, state, start = self.start_decoding(images_or_features, **decoder_options)
        if beam_width != 1:
            return beam_search(next_logits, state, start, beam_width, max_length, length_penalty)
        if (temperature, top_k, top_p) != (None, None, None):
            return sample_search(next_logits, state, start, max_length, 1.0 if temperature is None else temperature,
                                 top_k, top_p, seed=seed)
        return greedy_search(next_logits, state, start, max_length)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def _grouped(data):
    """Whether a batch's captions are grouped by image, (N, G, T), or not, (N, T)."""
    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if not (isinstance(x, tuple | list) and len(x) == 2):
        return False
    shape = x[1].shape
    rank = shape.rank if hasattr(shape, "rank") else len(shape)
    if rank is None:
        # Keras traces its train/test function with reduce_retracing: fed both layouts,
        # it relaxes the input shapes to an unknown rank.
        raise ValueError(
            "The captions have an unknown rank: this model's train or test function was fed both "
            "grouped (N, G, T) and plain (N, T) captions. Call `model.compile(...)` again before "
            "switching from one to the other."
        )
    if rank == 3 and sample_weight is not None:
        raise ValueError(
            "Grouped batches (captions (N, G, T)) take no sample weights. "
            f"Received: sample_weight of shape {tuple(sample_weight.shape)}"
        )
    return rank == 3
