"""The optimizer of a long run: Adam with a warm-up then cosine-decay learning rate, and gradient clipping."""

import keras

from kcaption.validation import check_positive_ints


def make_optimizer(learning_rate, steps_per_epoch, epochs, warmup_epochs=1, clipnorm=5.0):
    """Adam whose learning rate rises linearly from 0, then decays to 0 along a half cosine.

    Math, with W = warmup_epochs * steps_per_epoch warm-up steps, D the steps
    after them (epochs * steps_per_epoch - W) and s the optimizer's step:

        lr(s) = learning_rate * s / W                                 for s < W
        lr(s) = learning_rate * 0.5 * (1 + cos(pi * min(s - W, D) / D))   after

    The warm-up keeps Adam's first, poorly estimated steps small; the cosine
    ends the run at a small rate. The step count is the optimizer's, so a
    resumed run (BackupAndRestore) continues the schedule where it stopped.

    Args:
        learning_rate: the peak rate, reached after the warm-up.
        steps_per_epoch: optimizer steps in an epoch (batches of the training set).
        epochs: the length of the run, in epochs.
        warmup_epochs: the warm-up, in epochs (0: none; may be a fraction).
        clipnorm: each gradient's norm is clipped to this (None: no clipping).
            Under a `tf.distribute` strategy Keras clips each replica's
            gradient before summing them.

    Returns:
        A `keras.optimizers.Adam` whose learning rate is a
        `keras.optimizers.schedules.CosineDecay`.
    """
    check_positive_ints(steps_per_epoch=steps_per_epoch, epochs=epochs)
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    decay_steps = epochs * steps_per_epoch - warmup_steps
    if warmup_steps < 0 or decay_steps <= 0:
        raise ValueError(
            "`warmup_epochs` must be at least 0 and shorter than the run. "
            f"Received: warmup_epochs={warmup_epochs}, epochs={epochs}"
        )
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, warmup_target=learning_rate, warmup_steps=warmup_steps
    )
    return keras.optimizers.Adam(schedule, clipnorm=clipnorm)
