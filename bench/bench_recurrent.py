"""Benchmark: the kit's LSTMCell vs keras.layers.LSTM in the captioner, and eager vs compiled decoding.

    python bench/bench_recurrent.py [--batch 64] [--steps 30] [--repeats 5] [--no-jit]

(a) CaptioningRNN with the kit's `LSTMCell` inside `keras.layers.RNN` and
(b) the same captioner with `keras.layers.LSTM` (same weights layout), trained
side by side on the same batches with `jit_compile=True`; then greedy decoding
at batch 1, step by step in eager mode vs one compiled `tf.function` graph.
Prints steps/s (min and median of several runs) and the ratios.
Goals on CPU: (a)/(b) >= 1.0; compiled decode >= 25x eager.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KCAPTION_SOLUTIONS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import timed  # noqa: E402 (bench/timing.py)

from kcaption.models import CaptioningRNN  # noqa: E402
from kcaption.train import compile_captioner  # noqa: E402

V, C, D, H, T = 40, 128, 64, 128, 16


def captioner(builtin):
    model = CaptioningRNN(V, cell_type="lstm", embed_dim=D, hidden_dim=H)
    if builtin:  # (b): Keras's own LSTM layer in place of RNN(LSTMCell)
        model.rnn = keras.layers.LSTM(H, return_sequences=True, name="rnn")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-jit", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(args.batch * args.steps, C)).astype("float32")
    captions = rng.integers(1, V, size=(args.batch * args.steps, T + 1)).astype("int32")
    captions[:, -3:] = 0  # some padding, so the mask path runs

    names = ["(a) kit LSTMCell in keras.layers.RNN", "(b) keras.layers.LSTM"]
    epochs = []
    for builtin in (False, True):
        keras.utils.set_random_seed(0)
        model = captioner(builtin)
        compile_captioner(model, jit_compile=not args.no_jit)

        def epoch(model=model):
            model.fit((features, captions[:, :-1]), captions[:, 1:], batch_size=args.batch, epochs=1, verbose=0)

        epochs.append(epoch)
    rates = [(args.steps / best, args.steps / median) for best, median in timed(epochs, args.repeats)]
    for name, (best, median) in zip(names, rates):
        print(f"train {name:<40} {best:7.1f} steps/s (median {median:.1f})")
    (a_best, a_med), (b_best, b_med) = rates
    print(f"train ratio (a)/(b): {a_best / b_best:.2f} (median {a_med / b_med:.2f})   goal >= 1.0")

    model = captioner(False)
    one = features[:1]
    model((one, captions[:1, :-1]))
    eager, compiled = timed(
        [lambda: model.sample(one, max_length=T, compiled=False), lambda: model.sample(one, max_length=T)],
        args.repeats,
    )
    print(f"decode batch 1, {T} words: eager {1000 * eager[0]:.1f} ms, compiled {1000 * compiled[0]:.2f} ms "
          f"(median {1000 * eager[1]:.1f} / {1000 * compiled[1]:.2f})")
    print(f"decode ratio compiled/eager speed: {eager[0] / compiled[0]:.1f}x (median "
          f"{eager[1] / compiled[1]:.1f}x)   goal >= 25x")


if __name__ == "__main__":
    main()
