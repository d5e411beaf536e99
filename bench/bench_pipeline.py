"""Throughput of the tf.data pipeline on shapes: first epoch vs a cached epoch.

    python bench/bench_pipeline.py [--images 2000] [--repeats 3]

2000 shapes images, batch 64, captions="all" (5 examples per image). Two
sources: the in-memory arrays of `load_shapes`, and the same images as JPEG
files in a COCO-format folder (`export_shapes` + `read_coco`), where decoding
costs most. For each: an epoch without cache, the first epoch with
cache="memory" (it fills the cache), and a cached epoch. Prints min and median
of several runs, in examples/s (one example = one image with one caption), and
the cached/uncached ratio.
"""

import argparse
import statistics
import tempfile
import time

from kcaption.data import Vocabulary, export_shapes, load_shapes, make_dataset, read_coco


def epoch_seconds(dataset):
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def measure(records, vocab, repeats):
    """{setting: [seconds per run]} for one source."""
    times = {"no cache": [], "cache: first epoch": [], "cache: cached epoch": []}
    for _ in range(repeats):
        times["no cache"].append(epoch_seconds(make_dataset(records, vocab, batch_size=64)))
        cached = make_dataset(records, vocab, batch_size=64, cache="memory")
        times["cache: first epoch"].append(epoch_seconds(cached))
        times["cache: cached epoch"].append(epoch_seconds(cached))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    records = load_shapes("train", n=args.images)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    examples = sum(len(r.captions) for r in records)
    with tempfile.TemporaryDirectory() as folder:
        files, _ = read_coco(
            export_shapes(folder, n=args.images, split="train2014", seed=1), split="train2014"
        )
        sources = {"arrays": records, "JPEG files": files}
        results = {name: measure(recs, vocab, args.repeats) for name, recs in sources.items()}

    print(f"\n{args.images} images, {examples} examples per epoch, batch 64, {args.repeats} runs\n")
    print(
        f"{'source':<12} {'epoch':<22} {'min s':>7} {'median s':>9} {'examples/s':>11} {'vs no cache':>12}"
    )
    for name, times in results.items():
        base = min(times["no cache"])
        for setting, runs in times.items():
            best = min(runs)
            print(
                f"{name:<12} {setting:<22} {best:7.3f} {statistics.median(runs):9.3f} "
                f"{examples / best:11,.0f} {base / best:11.2f}x"
            )


if __name__ == "__main__":
    main()
