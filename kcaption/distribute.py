"""Where a training run computes: its precision (a Keras dtype policy) and its `tf.distribute` strategy.

Precision. `set_precision("mixed_float16")` sets Keras's *global* dtype policy,
before the model is built: every layer built afterwards computes in float16 and
keeps its variables in float32 (the captioners' output projections stay float32,
so the logits and the loss are float32). Why global rather than a model's
`dtype=`: Keras 3 does not hand a model's policy down to the sub-layers it
builds, so `CaptioningRNN(..., dtype="mixed_float16")` would leave its Dense,
RNN and encoder layers in float32; the global policy reaches all of them, the
keras.applications backbone included, and is what Keras's mixed precision guide
does. A saved model stores each layer's policy, so it reloads as it was trained.
`compile` wraps the optimizer in a `LossScaleOptimizer` when the model's policy
is "mixed_float16" (float16 gradients underflow without loss scaling);
"mixed_bfloat16" has float32's range and needs none. Use "mixed_float16" on
GPUs (on a CPU it is slower than float32, though correct), "mixed_bfloat16" on
TPUs and recent CPUs.

Strategy. `get_strategy("mirrored")` trains on every GPU of this host
(`tf.distribute.MirroredStrategy`); `get_strategy("multiworker")` on several
hosts (`MultiWorkerMirroredStrategy`), each running the same program with its
own `TF_CONFIG`, e.g. on host 0 of two:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'

(index 1 on the other host). Build and compile the model inside
`strategy.scope()`, and give `fit` the *global* batch (the sum over replicas):
each replica gets an equal share. The kit's loss divides each replica's mean
by the number of replicas, so the summed gradients are those of the global
mean (see `TemporalSoftmaxLoss`). Worker 0 is the chief: it writes the run
(`kcaption train`); the others write a run folder of their own (`worker_path`), removed
afterwards (saving is a collective step: every worker must take part).

Reference: the TensorFlow guide "Multi-worker training with Keras".
"""

import json
import os
from pathlib import Path

import keras

from kcaption.errors import InputError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}\''
)


def set_precision(name):
    """Set Keras's global dtype policy to `name`, one of `PRECISIONS`, for the layers built afterwards."""
    if name not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}. Received: precision={name!r}")
    keras.config.set_dtype_policy(name)


def get_strategy(name="default"):
    """The `tf.distribute.Strategy` called `name`, one of `STRATEGIES`.

    - "default": TensorFlow's default strategy (one device, nothing distributed).
    - "mirrored": `MirroredStrategy`, one replica per GPU of this host (the CPU when there is none).
    - "multiworker": `MultiWorkerMirroredStrategy` across the hosts `TF_CONFIG`
      names (checked first, see `read_tf_config`). Create it at the start of the
      program, before TensorFlow runs any operation.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise InputError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        read_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def read_tf_config(environ=None):
    """The `TF_CONFIG` of a multi-worker run, checked: {"cluster": {"worker": [...]}, "task": {...}}.

    Args:
        environ: the environment to read (default `os.environ`).

    Raises:
        InputError: TF_CONFIG is missing, is not JSON, or does not name this
            task among the cluster's workers (the message shows an example).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        raise InputError(f"--strategy multiworker needs TF_CONFIG, the cluster and this task, e.g. {TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"TF_CONFIG is not JSON ({error}); expected e.g. {TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not (isinstance(workers, list) and workers and all(_is_address(w) for w in workers)):
        raise InputError(
            "TF_CONFIG must list the workers' addresses as host:port in cluster.worker; expected e.g. "
            f"{TF_CONFIG_EXAMPLE}. Received: TF_CONFIG={_cut(text)}"
        )
    roles = {role: len(addresses) for role, addresses in cluster.items() if isinstance(addresses, list)}
    index = task.get("index") if isinstance(task, dict) else None
    role = task.get("type") if isinstance(task, dict) else None
    if role not in roles or not isinstance(index, int) or not 0 <= index < roles[role]:
        raise InputError(
            "TF_CONFIG's task must name this process among the cluster's, e.g. "
            f'"task": {{"type": "worker", "index": 0}}. Received: task={_cut(json.dumps(task))}'
        )
    return config


def is_chief(strategy):
    """Whether this process writes the run: always, except for the workers other than the chief
    (worker 0, or the task of type "chief") of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def worker_path(path, strategy):
    """Where this process writes `path`: `path` on the chief, else in a folder of its own beside it,
    `<parent>/.worker-<id>/<name>` (`kcaption.train` removes it at the end)."""
    path = Path(path)
    if is_chief(strategy):
        return path
    return path.parent / f".worker-{strategy.cluster_resolver.task_id}" / path.name


def synchronize_batch_norm(model):
    """Make `model`'s BatchNormalization layers normalise with the global batch's statistics.

    Under a strategy each replica sees its share of the batch: without this a
    training step normalises each share with its own mean and variance, and
    the run differs from one on a single device. Call it in the strategy's
    scope, before `fit`, when there is more than one replica (on one device it
    only changes how the variance is computed, E[x^2] - E[x]^2).
    """
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def shard_by_example(dataset):
    """`dataset`, split among the workers by examples rather than by input files.

    Each worker then reads the same batches and keeps its share of each: every
    worker runs the same number of steps (split by files, workers given
    unequal files would wait for each other at the end of an epoch). Workers
    must shuffle with the same seed.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _is_address(address):
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    return bool(host) and port.isdigit()


def _cut(text, limit=200):
    return text if len(text) <= limit else text[:limit] + "..."
