"""Benchmark: beam search vs greedy, the transformer's KV cache vs re-running the prefix, and what beams buy.

    python bench/bench_decode.py [--repeats 5] [--runs RUN ...] [--skip-quality]

(a) Greedy vs beam search (k = 1, 3, 5) on the same batch of 64, compiled, for
    an LSTM and a transformer captioner (cached). Goal: k = 3 costs <= 4x greedy.
(b) Transformer greedy decoding with the key/value cache vs re-running the
    prefix at every step, at 16, 32 and 64 words, batch 1 and 64, compiled.
    Goal: >= 3x at 32 words.
(c) Beam search (k = 3) vs greedy on the shapes test split: BLEU-4 and CIDEr-D
    of lstm, attn and transformer, trained here for a few minutes (or the
    models of `--runs` folders written by `kcaption train`).

Timings are seconds per call, min and median of `--repeats` rounds after one
warm-up call that compiles; the functions of one comparison take turns within
every round, so a burst of load on a shared machine slows all of them alike.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KCAPTION_SOLUTIONS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import timed  # noqa: E402 (bench/timing.py)

from kcaption.models import CaptioningRNN, CaptioningTransformer  # noqa: E402

V, L, C = 40, 16, 128  # vocabulary, feature cells, feature channels (the shapes small CNN's grid)


def deterministic_weights(model, inputs):
    """Build `model` on `inputs` and give every weight a fixed pattern (no random draws)."""
    model(inputs, training=False)
    model.set_weights([np.sin(np.linspace(-3, 3, w.size) + i).reshape(w.shape) * 0.3
                       for i, w in enumerate(model.get_weights())])
    return model


def models(max_length):
    features = np.cos(np.linspace(-4, 4, 2 * L * C)).reshape(2, L, C).astype("float32")
    tokens = np.ones((2, 3), "int32")
    lstm = deterministic_weights(CaptioningRNN(V, cell_type="lstm", embed_dim=64, hidden_dim=128),
                                 (features.mean(1), tokens))
    transformer = deterministic_weights(
        CaptioningTransformer(V, embed_dim=64, num_heads=4, num_layers=2, feedforward_dim=128, dropout=0.0,
                              max_length=max_length + 1), (features, tokens))
    return lstm, transformer


def beams_vs_greedy(lstm, transformer, repeats, batch=64, words=16):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(batch, L, C)).astype("float32")
    print(f"(a) beam search vs greedy, batch {batch}, {words} words, compiled")
    for name, model, x in (("lstm", lstm, features.mean(1)), ("transformer", transformer, features)):
        widths = (1, 3, 5)
        calls = [lambda model=model, x=x: np.asarray(model.sample(x, words))] + [
            lambda k=k, model=model, x=x: np.asarray(model.sample(x, words, beam_width=k)) for k in widths]
        (greedy, greedy_median), *beams = timed(calls, repeats)
        print(f"    {name:<12} greedy {1000 * greedy:7.1f} ms (median {1000 * greedy_median:.1f})")
        for k, (best, median) in zip(widths, beams):
            goal = "  (goal <= 4x)" if k == 3 else ""
            print(f"    {'':<12} k = {k}  {1000 * best:7.1f} ms (median {1000 * median:.1f}): "
                  f"{best / greedy:.2f}x greedy{goal}")


def cache_vs_rerun(transformer, repeats):
    rng = np.random.default_rng(1)
    print("(b) transformer greedy decoding: KV cache vs re-running the prefix, compiled (tf.function; and XLA)")
    for jit in (False, True):
        for batch in (1, 64):
            features = rng.normal(size=(batch, L, C)).astype("float32")
            for words in (16, 32, 64):
                calls = [lambda use_cache=use_cache, x=features, n=words, jit=jit:
                         np.asarray(transformer.sample(x, n, use_cache=use_cache, jit_compile=jit))
                         for use_cache in (False, True)]
                (rerun, rerun_median), (cached, cached_median) = timed(calls, repeats)
                goal = "  (goal >= 3x)" if words == 32 else ""
                print(f"    {'XLA' if jit else 'graph'}, batch {batch:2d}, {words:2d} words: re-run {1000 * rerun:7.1f} "
                      f"ms (median {1000 * rerun_median:.1f}), cached {1000 * cached:6.1f} ms (median "
                      f"{1000 * cached_median:.1f}): {rerun / cached:.2f}x{goal}")


def trained_entries(names, epochs, n):
    from kcaption.data import Vocabulary, load_shapes, make_dataset
    from kcaption.evaluation.compare import Entry
    from kcaption.losses import TemporalSoftmaxLoss
    from kcaption.models import build_captioner

    train = load_shapes("train", n=n)
    vocab = Vocabulary.build(c for r in train for c in r.captions)
    data = make_dataset(train, vocab, batch_size=32, captions="grouped", cache="memory", shuffle=True,
                        too_long="skip")
    entries = []
    for name in names:
        keras.utils.set_random_seed(0)
        model = build_captioner(name, len(vocab), embed_dim=64, hidden_dim=128)
        model.compile(keras.optimizers.Adam(2e-3 if name == "transformer" else 3e-3, clipnorm=5.0),
                      TemporalSoftmaxLoss())
        start = time.perf_counter()
        model.fit(data, epochs=epochs[name], verbose=0)
        entries.append(Entry(name, model, vocab, 64, time.perf_counter() - start))
    return entries


def quality(args):
    from kcaption.evaluation.compare import compare_models, compare_runs

    print("(c) beam search (k = 3) vs greedy on shapes test images")
    if args.runs:
        comparison = compare_runs(args.runs, n=args.images, beam_width=3)
    else:
        epochs = {"lstm": args.epochs, "attn": args.epochs, "transformer": args.epochs}
        entries = trained_entries(["lstm", "attn", "transformer"], epochs, args.train_images)
        print(f"    trained here: {args.train_images} images, {args.epochs} epochs each "
              f"({', '.join(f'{e.name} {e.train_seconds:.0f} s' for e in entries)})")
        comparison = compare_models(entries, n=args.images, beam_width=3)
    for row in comparison.rows:
        print(f"    {row['model']:<12} BLEU-4 greedy {row['bleu4']:.3f} beam {row['beam_bleu4']:.3f}   "
              f"CIDEr-D greedy {row['cider_d']:.3f} beam {row['beam_cider_d']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", nargs="*", default=None, help="(c): run folders instead of training here")
    parser.add_argument("--images", type=int, default=200, help="(c): test images scored")
    parser.add_argument("--train-images", type=int, default=2000, help="(c): training images")
    parser.add_argument("--epochs", type=int, default=10, help="(c): epochs per model")
    parser.add_argument("--skip-quality", action="store_true", help="skip (c), which trains three models")
    args = parser.parse_args()
    lstm, transformer = models(max_length=64)
    beams_vs_greedy(lstm, transformer, args.repeats)
    cache_vs_rerun(transformer, args.repeats)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
