"""tf.distribute: MirroredStrategy on two logical CPUs against one device, two local workers, TF_CONFIG's checks.

Logical devices must be set before TensorFlow starts, and a multi-worker
strategy owns its process: each case runs in a fresh Python process.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kcaption import runs, steps
from kcaption.distribute import get_strategy, is_chief, read_tf_config
from kcaption.errors import InputError

REPO = Path(__file__).resolve().parents[2]

# One device vs MirroredStrategy over two logical CPUs, the same weights and the same global batches
# (8 images, plain: 8 captions; grouped: 8 images x 5 captions), two epochs of two SGD steps.
# SGD, not Adam: Adam's update hardly depends on the gradients' scale, so it would hide a loss
# summed over the replicas instead of averaged.
MIRRORED = r"""
import json, sys
from kcaption import quiet_tensorflow
quiet_tensorflow()
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from kcaption.data import Vocabulary, load_shapes, make_dataset
from kcaption.distribute import synchronize_batch_norm
from kcaption.losses import TemporalSoftmaxLoss
from kcaption.models import build_captioner

records = load_shapes("train", n=16, image_size=32)
vocab = Vocabulary.build(c for r in records for c in r.captions)
# One strategy object each for the two layouts: two MirroredStrategy objects in a process would
# number their collective operations alike, and mix them up.
strategies = (tf.distribute.OneDeviceStrategy("/cpu:0"), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
result = {}
for layout in ("all", "grouped"):
    # One fixed epoch: the batches, materialised once, are the same for both runs.
    (images, captions_in), captions_out = next(iter(make_dataset(
        records, vocab, batch_size=16, image_size=32, captions=layout, seed=0, too_long="skip")))
    data = tf.data.Dataset.from_tensor_slices(((images, captions_in), captions_out)).batch(8, drop_remainder=True)
    first = captions_in[:2] if layout == "all" else captions_in[:2, 0]
    runs = []
    for strategy in strategies:
        with strategy.scope():
            model = build_captioner("lstm", len(vocab), image_size=32, embed_dim=16, hidden_dim=16)
            synchronize_batch_norm(model)
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss=TemporalSoftmaxLoss(), jit_compile=False)
            model((images[:2], first))
        if runs:
            model.set_weights(start)
        else:
            start = model.get_weights()
        loss = model.evaluate(data, verbose=0)
        history = model.fit(data, epochs=2, verbose=0).history["loss"]
        runs.append((model, [float(loss), *history]))
    (one, one_losses), (two, two_losses) = runs
    result[layout] = {
        "replicas": two.distribute_strategy.num_replicas_in_sync,
        "losses": [one_losses, two_losses],
        "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), start)),
        "weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), two.get_weights())),
    }
print("RESULT " + json.dumps(result))
"""


def run_python(code, env=None, timeout=300):
    env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True), timeout


def finish(started):
    process, timeout = started
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    print(stdout.splitlines()[-1])
    return stdout


@pytest.mark.slow
def test_mirrored_on_two_devices_matches_one_device_for_the_same_global_batch():
    stdout = finish(run_python(MIRRORED))
    result = json.loads(stdout.split("RESULT ", 1)[1])
    for layout, case in result.items():
        assert case["replicas"] == 2
        one, two = case["losses"]
        # The same sums in another order (two halves of the batch, then their sum): float32
        # rounding, ~1e-7 relative per operation. A loss summed over the replicas would be 2x.
        assert two == pytest.approx(one, rel=1e-5), (
            f"{layout} batches: the loss on 2 replicas (evaluate, then fit's epochs) is {two}, on one "
            f"device {one}: each replica's loss must be divided by the number of replicas, and the "
            "loss tracker given it multiplied back"
        )
        # After 4 SGD steps that moved the weights by case["moved"] (~0.3), the two runs differ by
        # rounding only (measured 6e-8); gradients 2x too large would differ by about as much as they moved.
        assert case["weight_diff"] < 1e-5, (
            f"{layout} batches: the weights after training on 2 replicas differ from one device's by "
            f"{case['weight_diff']:.2e} (they moved by {case['moved']:.2e}): the summed gradients are not "
            "those of the global batch's mean loss"
        )


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_local_workers_train_an_epoch_and_only_the_chief_writes_the_run(tmp_path):
    """`kcaption train --strategy multiworker`, as a user runs it on two hosts, on two loopback ports."""
    steps.require(["lstm.cell", "captioner.forward", "loss.temporal_softmax", "captioner.sample"], "this test")
    workers = [f"localhost:{free_port()}" for _ in range(2)]
    out = tmp_path / "run"
    code = ("import sys\nfrom kcaption.cli import main\n"
            f"sys.exit(main(['train', '--small', '--epochs', '1', '--strategy', 'multiworker', '--out', {str(out)!r}]))")
    started = [
        run_python(code, {"MPLBACKEND": "Agg", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    outputs = [finish(s) for s in started]
    # Both evaluate the held-out split together (a collective step): the same loss on each worker.
    losses = [re.search(r"Held-out \(val, 24 images\): loss ([0-9.]+)", text).group(1) for text in outputs]
    assert losses[0] == losses[1], losses
    assert runs.state(out) == "finished" and (out / "model.keras").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "the other worker's run was left behind"
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, "needs TF_CONFIG"),
        ("{cluster: 1}", "not JSON"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "task must name"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}}', "task must name"),
    ],
)
def test_tf_config_mistakes_are_one_clear_line_with_an_example(tf_config, expected):
    environ = {} if tf_config is None else {"TF_CONFIG": tf_config}
    with pytest.raises(InputError, match=expected) as caught:
        read_tf_config(environ)
    assert "\n" not in str(caught.value)


def test_a_good_tf_config_is_read_and_a_process_without_one_is_the_chief():
    config = read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", '
                                          '"index": 1}}'})
    assert config["task"]["index"] == 1
    assert is_chief(get_strategy("default"))
    with pytest.raises(InputError, match="Received: strategy='tpu'"):
        get_strategy("tpu")
