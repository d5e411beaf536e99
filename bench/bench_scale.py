"""Training at scale on a frozen backbone: cached features vs pixels, extraction, memory.

    python bench/bench_scale.py [--quick] [--images 2000] [--rss-images 2000 10000]
                                [--backbone mobilenet_v3_small] [--image-size 224] [--repeats 3]

On a COCO-format export of shapes images (`export_shapes`, read with `read_coco`),
an LSTM captioner (kit defaults: D=128, H=256), batch 64, captions grouped by
image, random frozen backbone weights (weights=None: the same path as ImageNet's),
jit_compile off:

(a) seconds per training epoch on cached features (`feature_dataset`) vs on
    pixels through the same frozen backbone in the model (`make_dataset`);
    the epochs after the first (which traces), min and median, and the ratio;
(b) feature extraction (`FeatureStore.extract`: decode, resize, backbone,
    write float16 shards), images/s, min and median of several runs;
(c) peak RSS of one training epoch on cached features for each N of
    --rss-images, each in a fresh process, and its growth over the process's
    RSS before the epoch. The peak is /proc/self/status's VmHWM: a child's
    `getrusage(RUSAGE_SELF).ru_maxrss` starts from its parent's peak at the
    fork (Linux keeps it across exec), and this parent has written N images;
and the features' size on disk per image for every backbone at --image-size.
--quick: tiny sizes (64 px, 48 images, N = 100 and 300), a smoke run in a minute.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to smoke-run it")
    parser.add_argument("--images", type=int, default=2000, help="images for (a) and (b)")
    parser.add_argument("--rss-images", type=int, nargs="+", default=[2000, 10000], help="N for (c)")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. ab")
    parser.add_argument("--rss-child", nargs=3, metavar=("ROOT", "FEATURES", "SPLIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child, args.backbone, args.image_size)
    if args.quick:
        args.images, args.rss_images, args.image_size, args.repeats = 48, [100, 300], 64, 2

    from kcaption import quiet_tensorflow

    quiet_tensorflow()
    from kcaption.data import FeatureStore, Vocabulary

    print(f"{args.backbone}, {args.image_size} px, random frozen weights, {args.repeats} runs\n")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        records = export(folder / f"coco-{args.images}", args.images, args.image_size)
        store = FeatureStore(folder / "features", backbone=args.backbone, weights=None, image_size=args.image_size)
        vocab = Vocabulary.build(c for r in records for c in r.captions)

        store.extract(records[:32], "warm-up", progress=False)  # the encoder made, its function traced
        extraction = []
        for run in range(args.repeats if "b" in args.parts else 1):
            start = time.perf_counter()
            cache = store.extract(records, "train", force=run > 0, progress=False)
            extraction.append(time.perf_counter() - start)
        print(f"{len(records)} images, batch 64, captions grouped (5 per image)\n")
        if "a" in args.parts:
            epochs = epoch_seconds(store, cache, records, vocab, args.image_size, args.repeats)
            print(f"{'(a) training epoch':<30} {'min s':>8} {'median s':>9} {'vs pixels':>10}")
            for name, runs in epochs.items():
                ratio = min(epochs["pixels"]) / min(runs)
                print(f"    {name:<26} {min(runs):8.3f} {statistics.median(runs):9.3f} {ratio:9.1f}x")
        if "b" in args.parts:
            print(
                f"\n(b) extraction: {len(records) / min(extraction):,.0f} images/s best, "
                f"{len(records) / statistics.median(extraction):,.0f} median (decode, resize, backbone, write)"
            )
            on_disk = sum(Path(f).stat().st_size for kind in ("pooled", "spatial") for f in cache.files(kind))
            print(f"    on disk: {on_disk / len(records) / 1e3:,.1f} kB per image (pooled + spatial, TFRecord)")

        if "c" in args.parts:
            memory_table(args, folder, store, records)

    print(f"\nFeatures on disk per image at {args.image_size} px, float16 (pooled + spatial):")
    for backbone, (pooled, spatial) in feature_shapes(args.image_size).items():
        kb = 2 * (pooled[0] + spatial[0] * spatial[1]) / 1e3
        print(f"    {backbone:<20} pooled {pooled}, spatial {spatial}: {kb:,.1f} kB "
              f"({kb * 123_287 / 1e6:,.1f} GB for COCO's 123,287 images)")


def export(root, n, image_size):
    """A COCO-format folder of n shapes images (split train2014): its records."""
    from kcaption.data import export_shapes, read_coco

    return read_coco(export_shapes(root, n=n, split="train2014", image_size=image_size), "train2014")[0]


def memory_table(args, folder, store, records):
    """(c): the peak RSS of an epoch on cached features for each N, each in a fresh process."""
    print("\n(c) one epoch on cached features, a fresh process per N")
    print(f"    {'N':>7} {'peak RSS MB':>12} {'before epoch MB':>16} {'growth MB':>10}")
    peaks = []
    for n in args.rss_images:
        root, split = folder / f"coco-{n}", f"rss-{n}"
        if n == len(records):  # the export and cache of (a) and (b)
            split = "train"
        else:
            store.extract(export(root, n, args.image_size), split, progress=False)
        child = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(root), str(folder / "features"), split,
             "--backbone", args.backbone, "--image-size", str(args.image_size)],
            capture_output=True, text=True,
        )
        if child.returncode:
            sys.exit(f"the N = {n} process failed:\n{child.stderr[-3000:]}")
        peak = json.loads(child.stdout.splitlines()[-1])
        peaks.append(peak["peak_mb"])
        print(f"    {n:>7,} {peak['peak_mb']:12,.0f} {peak['before_mb']:16,.0f} {peak['growth_mb']:10,.0f}")
    print(f"    largest / smallest N: peak RSS x{max(peaks) / min(peaks):.3f}")


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def epoch_seconds(store, cache, records, vocab, image_size, repeats):
    """{"pixels": [...], "cached features": [...]}: seconds of each epoch after the first."""
    from kcaption.data import feature_dataset, make_dataset
    from kcaption.models import CaptioningRNN
    from kcaption.train import compile_captioner

    inputs = {
        "pixels": make_dataset(records, vocab, image_size=image_size, captions="grouped", shuffle=True, seed=0,
                               too_long="skip"),
        "cached features": feature_dataset(cache, records, vocab, captions="grouped", shuffle=True, seed=0),
    }
    times = {}
    for name, dataset in inputs.items():
        model = compile_captioner(CaptioningRNN(len(vocab), cell_type="lstm", encoder=store.encoder()),
                                  jit_compile=False)
        timer = EpochTimer()
        model.fit(dataset, epochs=repeats + 1, verbose=0, callbacks=[timer])
        times[name] = timer.seconds[1:]
    return times


def rss_child(root, features, split, backbone, image_size):
    """One epoch on the cached features of ROOT's images; prints {"peak_mb", "before_mb", "growth_mb"}."""
    from kcaption import quiet_tensorflow

    quiet_tensorflow()
    from kcaption.data import FeatureStore, Vocabulary, feature_dataset, read_coco
    from kcaption.models import CaptioningRNN
    from kcaption.train import compile_captioner

    records = read_coco(root, "train2014")[0]
    store = FeatureStore(features, backbone=backbone, weights=None, image_size=image_size)
    cache = store.open(split, records)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    dataset = feature_dataset(cache, records, vocab, captions="grouped", shuffle=True, seed=0)
    model = compile_captioner(CaptioningRNN(len(vocab), cell_type="lstm", encoder=store.encoder()), jit_compile=False)
    (features, captions_in), _ = next(iter(dataset))
    model((features, captions_in[:, 0]))  # built: what the epoch adds is the data's
    before = _memory_mb("VmRSS")
    model.fit(dataset, epochs=1, verbose=0)
    peak = _memory_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "before_mb": before, "growth_mb": peak - before}))


def _memory_mb(field):
    """/proc/self/status's VmRSS (now) or VmHWM (peak of this process since its exec), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status (Linux only)")


def feature_shapes(image_size):
    """{backbone: ((C,), (L, C))}: each keras.applications backbone's features at image_size."""
    from kcaption.models.encoder import BACKBONES

    shapes = {}
    for name, (constructor, _, _) in BACKBONES.items():
        network = getattr(keras.applications, constructor)(
            include_top=False, weights=None, input_shape=(image_size, image_size, 3)
        )
        _, height, width, channels = network.output_shape
        shapes[name] = ((channels,), (height * width, channels))
    return shapes


if __name__ == "__main__":
    main()
