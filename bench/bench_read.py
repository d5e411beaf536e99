"""Reading COCO-sized captions files and building the vocabulary: seconds, not minutes.

    python bench/bench_read.py [--images 123287] [--captions 5] [--words 10000] [--repeats 3]

Writes a synthetic COCO folder of COCO 2014's size: 123,287 images (82,783 in
train2014, the rest in val2014) with 5 captions each (616k in all), English-
like sentences of about 10 words drawn from a Zipf vocabulary of 10k words
(1% longer than the kit's 15 tokens), the two captions files and a Karpathy
split file. The images are hard links to a few small JPEGs: `read_coco` opens
each file for its first bytes (the format check), so they must exist.

Then times, min and median of several runs: `read_coco` of each official
split and of the whole Karpathy file (check_images=False, the format check
only), `drop_long_captions` and `Vocabulary.build(min_count=5)` over all the
captions, and `encode_captions` (what `make_dataset` runs first). The full
decode of `check_images=True` is timed on a sample of COCO-sized JPEGs
(640x480) and given per image and extrapolated to all.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from kcaption.data import Vocabulary, encode_captions, make_shapes, read_coco
from kcaption.data.records import drop_long_captions

TRAIN_IMAGES = 82783  # COCO 2014's train2014; val2014 holds 40,504
KARPATHY = [("train", 0), ("val", 5000), ("test", 10000)]  # split: end, counted in val2014
MAX_LENGTH = 17
LINKS_PER_FILE = 60000  # ext4 allows 65,000 hard links to a file


def make_words(count, rng):
    """`count` distinct pronounceable words, 1 to 4 syllables."""
    onsets, vowels, codas = (
        list("bcdfghklmnprstvwz") + ["ch", "sh", "th", "st"],
        list("aeiou"),
        [
            "",
            "",
            "n",
            "r",
            "s",
            "t",
            "ng",
            "ck",
        ],
    )
    words = set()
    while len(words) < count:
        syllables = rng.integers(1, 5)
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    return sorted(words, key=len)  # short words are the frequent ones, as in English


def make_captions(count, words, rng):
    """`count` sentences of ~10 Zipf-distributed words (1% of 16-40 words), some ending in "."."""
    weights = 1.0 / np.arange(1, len(words) + 1)
    lengths = np.where(
        rng.random(count) < 0.01, rng.integers(16, 41, count), 8 + rng.poisson(2, count)
    )
    ids = rng.choice(len(words), size=int(lengths.sum()), p=weights / weights.sum())
    captions, start = [], 0
    for length, period in zip(lengths, rng.random(count) < 0.5):
        sentence = " ".join(words[i] for i in ids[start : start + length])
        captions.append(sentence.capitalize() + ("." if period else ""))
        start += length
    return captions


def write_folder(root, images, captions_per_image, words, seed=0):
    rng = np.random.default_rng(seed)
    captions = make_captions(images * captions_per_image, make_words(words, rng), rng)
    pixels = Image.fromarray(make_shapes(1, seed=seed, image_size=32)[0].image)
    sources = [root / f"one-{k}.jpg" for k in range(images // LINKS_PER_FILE + 1)]
    for source in sources:
        pixels.save(source)
    coco = {s: {"images": [], "annotations": []} for s in ("train2014", "val2014")}
    karpathy = []
    for index in range(images):
        split = "train2014" if index < TRAIN_IMAGES else "val2014"
        image_id, name = index + 1, f"COCO_{split}_{index + 1:012d}.jpg"
        (root / split).mkdir(exist_ok=True)
        os.link(sources[index // LINKS_PER_FILE], root / split / name)
        mine = captions[index * captions_per_image : (index + 1) * captions_per_image]
        coco[split]["images"].append({"id": image_id, "file_name": name})
        coco[split]["annotations"] += [
            {"id": index * captions_per_image + k, "image_id": image_id, "caption": c}
            for k, c in enumerate(mine)
        ]
        order = index - TRAIN_IMAGES  # Karpathy's val and test are 5,000 each of val2014
        label = next((name for name, end in KARPATHY if order < end), "restval")
        karpathy.append(
            {
                "filepath": split,
                "filename": name,
                "split": label,
                "cocoid": image_id,
                "sentences": [{"raw": c, "tokens": c.lower().rstrip(".").split()} for c in mine],
            }
        )
    (root / "annotations").mkdir()
    for split, data in coco.items():
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(data))
    (root / "dataset_coco.json").write_text(json.dumps({"images": karpathy, "dataset": "coco"}))
    return captions


def timed(function, repeats):
    """(seconds of each run, the last result)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def decode_seconds_per_image(folder, sample):
    """check_images=True minus check_images=False, per image, on `sample` 640x480 JPEGs."""
    split = folder / "decode" / "val2014"
    split.mkdir(parents=True)
    images = []
    for index, record in enumerate(make_shapes(sample, seed=1, image_size=480), start=1):
        pixels = np.asarray(Image.fromarray(record.image).resize((640, 480)))
        noisy = np.clip(pixels + np.random.default_rng(index).normal(0, 12, pixels.shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(split / f"{index}.jpg", quality=90)
        images.append({"id": index, "file_name": f"{index}.jpg"})
    annotations = [{"image_id": i["id"], "caption": "a caption"} for i in images]
    (folder / "decode" / "annotations").mkdir()
    (folder / "decode" / "annotations" / "captions_val2014.json").write_text(
        json.dumps({"images": images, "annotations": annotations})
    )
    full, _ = timed(lambda: read_coco(folder / "decode", check_images=True), 3)
    quick, _ = timed(lambda: read_coco(folder / "decode", check_images=False), 3)
    size = sum(p.stat().st_size for p in split.iterdir()) / sample
    return (min(full) - min(quick)) / sample, size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=123287)
    parser.add_argument("--captions", type=int, default=5, help="captions per image")
    parser.add_argument("--words", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--decode-sample", type=int, default=200, help="JPEGs for check_images=True"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        write_folder(root, args.images, args.captions, args.words)
        written = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size / 1e6 for p in root.rglob("*.json")}
        rows, results = [], {}
        for name, read in [
            ("read_coco train2014", lambda: read_coco(root, "train2014", check_images=False)),
            ("read_coco val2014", lambda: read_coco(root, "val2014", check_images=False)),
            (
                "read_coco Karpathy, all splits",
                lambda: read_coco(
                    root, karpathy_split="train+val+test+restval", check_images=False
                ),
            ),
        ]:
            seconds, results[name] = timed(read, args.repeats)
            rows.append(
                (
                    name,
                    seconds,
                    f"{results[name][1].images} images, {results[name][1].captions} captions",
                )
            )
        records = results["read_coco train2014"][0] + results["read_coco val2014"][0]
        seconds, (kept, report) = timed(
            lambda: drop_long_captions(records, MAX_LENGTH), args.repeats
        )
        rows.append(("drop_long_captions", seconds, f"dropped {report.too_long} captions"))
        captions = [c for r in kept for c in r.captions]
        seconds, vocab = timed(lambda: Vocabulary.build(captions, min_count=5), args.repeats)
        rows.append(("Vocabulary.build(min_count=5)", seconds, f"{len(vocab)} words"))
        seconds, _ = timed(
            lambda: encode_captions(kept, vocab, max_length=MAX_LENGTH), args.repeats
        )
        rows.append(("encode_captions", seconds, f"{len(captions)} captions"))
        per_image, jpeg_size = decode_seconds_per_image(root, args.decode_sample)

    print(
        f"\n{args.images} images, {args.images * args.captions} captions (folder written in {written:.0f} s; "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sizes.items())
        + f"), {args.repeats} runs\n"
    )
    print(f"{'step':<32} {'min s':>7} {'median s':>9}  result")
    for name, seconds, result in rows:
        print(f"{name:<32} {min(seconds):7.2f} {statistics.median(seconds):9.2f}  {result}")
    print(
        f"\ncheck_images=True decodes each image: {per_image * 1e3:.1f} ms per 640x480 JPEG "
        f"({jpeg_size / 1e3:.0f} kB, {args.decode_sample} images, 16 threads on {os.cpu_count()} "
        f"cores), {per_image * args.images / 60:.1f} min for {args.images} images"
    )


if __name__ == "__main__":
    main()
