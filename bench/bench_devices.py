"""Benchmark: one device vs MirroredStrategy over two logical CPU devices, and XLA / steps_per_execution.

    python bench/bench_devices.py [--batch 32] [--steps 8] [--repeats 3] [--configs graph,xla]

The lstm captioner (the demo's size: embed 64, hidden 128, 64-px shapes
images, grouped batches of `--batch` images x 5 captions) trains `--steps`
steps per epoch from the same weights on the same global batches, for each
config ("graph" or "xla", ":K" for steps_per_execution=K), on one device and
on two replicas side by side. Prints, per config: the loss difference between
the two after one epoch (correctness), and images/s and captions/s (min and
median of `--repeats` epochs, after a first epoch that compiles).

Two logical devices split one CPU's cores, so on a CPU the second replica
adds no compute: this checks the mirrored path's cost and correctness, not a
speed-up (which needs two GPUs).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KCAPTION_SOLUTIONS", "1")

from kcaption import quiet_tensorflow  # noqa: E402

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras  # noqa: E402

from kcaption.data import Vocabulary, load_shapes, make_dataset  # noqa: E402
from kcaption.data.pipeline import GROUP_SIZE  # noqa: E402
from kcaption.distribute import synchronize_batch_norm  # noqa: E402
from kcaption.losses import TemporalSoftmaxLoss  # noqa: E402
from kcaption.models import build_captioner  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="global batch, in images")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default="graph,xla")
    return parser.parse_args()


def model_on(strategy, vocab, images, captions_in, jit_compile, steps_per_execution, weights=None):
    with strategy.scope():
        model = build_captioner("lstm", len(vocab), image_size=64, embed_dim=64, hidden_dim=128, initial_cell="h0")
        synchronize_batch_norm(model)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=TemporalSoftmaxLoss(), jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution)
        model((images[:2], captions_in[:2, 0]))
    if weights is not None:
        model.set_weights(weights)
    return model


def main():
    args = parse_args()
    configs = args.configs.split(",")
    if len(configs) > 1:  # one process per config: the models of one config only (collectives, memory)
        for i, config in enumerate(configs):
            command = [sys.executable, __file__, "--batch", str(args.batch), "--steps", str(args.steps),
                       "--repeats", str(args.repeats), "--configs", config]
            lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
            print("\n".join(lines if i == 0 else lines[2:]), flush=True)
        return
    records = load_shapes("train", n=args.batch * args.steps)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    # One epoch, cached as its first pass drew it: the same batches for every run.
    data = make_dataset(records, vocab, batch_size=args.batch, captions="grouped", seed=0, too_long="skip",
                        drop_remainder=True).take(args.steps).cache()
    (images, captions_in), _ = next(iter(data))
    strategies = {"1 device": tf.distribute.get_strategy,  # the default strategy: nothing distributed
                  "2 replicas": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
    print(f"lstm captioner, {args.steps} steps of {args.batch} images x {GROUP_SIZE} captions, "
          f"min / median of {args.repeats} epochs after a compiling one")
    print(f"{'config':<10}{'devices':<12}{'images/s':>18}{'captions/s':>20}{'loss after 1 epoch':>22}")
    for config in args.configs.split(","):
        mode, _, k = config.partition(":")
        steps_per_execution = int(k or 1)
        weights, losses, rows = None, {}, {}
        for label, strategy in strategies.items():
            model = model_on(strategy(), vocab, images, captions_in, mode == "xla", steps_per_execution, weights)
            weights = weights or model.get_weights()
            try:
                losses[label] = model.fit(data, epochs=1, verbose=0).history["loss"][0]  # compiles
            except tf.errors.InvalidArgumentError as error:  # XLA over replicas on one host's CPU
                lines = [line for line in error.message.splitlines() if "Trying to access" in line] or [error.message]
                print(f"{config:<10}{label:<12}fails: {lines[0].strip()[:160]}")
                continue
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model.fit(data, epochs=1, verbose=0)
                seconds.append(time.perf_counter() - start)
            rows[label] = [args.batch * args.steps / s for s in (max(seconds), statistics.median(seconds))]
        for label, (slowest, median) in rows.items():
            rate = f"{slowest:.0f} / {median:.0f}"
            captions = f"{slowest * GROUP_SIZE:.0f} / {median * GROUP_SIZE:.0f}"
            print(f"{config:<10}{label:<12}{rate:>18}{captions:>20}{losses[label]:>22.6f}")
        if len(rows) < 2:
            continue
        difference = abs(losses["2 replicas"] - losses["1 device"]) / losses["1 device"]
        print(f"{'':<10}2 replicas / 1 device: speed {rows['2 replicas'][1] / rows['1 device'][1]:.2f}x, "
              f"loss relative difference {difference:.1e}")


if __name__ == "__main__":
    main()
