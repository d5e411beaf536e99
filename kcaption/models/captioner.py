"""What every captioner shares: grouped training steps, greedy sampling run as one compiled graph,
and its encoder in the config."""

import keras
from keras import ops


class Captioner(keras.Model):
    """Base class of the captioners (`CaptioningRNN`, `CaptioningTransformer`).

    A subclass builds its layers, keeps its `ImageEncoder` (or None) as
    `self.encoder`, and implements `_sample(images_or_features, max_length)`
    with `kcaption.decoding.greedy_search`, and `encode(images_or_features)`
    (images go through the encoder, features come back as given, in the form
    `call` takes them); this class runs the sampling loop eagerly or as one
    compiled `tf.function`, and saves the encoder with the model.

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
        # One graph per input rank (images, pooled or spatial features): `reduce_retracing` would
        # relax the shapes of a model fed images, then features, to an unknown rank.
        rank = len(images_or_features.shape)
        if rank not in self._compiled_sample:
            import tensorflow as tf

            self._compiled_sample[rank] = tf.function(self._sample, reduce_retracing=True)
        return self._compiled_sample[rank](images_or_features, max_length)

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
