"""The whole COCO path as a user runs it, through the CLI, on a COCO-format folder the kit writes itself.

export-shapes -> features (a frozen backbone, random weights: no download here) -> train on the cached
features -> caption raw image files through the saved backbone -> evaluate on the Karpathy test split, and
on an outside test set in COCO's format (`--data folder`) with beam search.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcaption import runs, steps
from kcaption.train import REQUIRED_STEPS

REPO = Path(__file__).resolve().parents[2]
BACKBONE = ["--backbone", "mobilenet_v3_small", "--weights", "none", "--image-size", "96"]


def kcaption(*args, timeout=600):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "kcaption", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=timeout)
    return result


def shard_times(folder):
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*.tfrecord")}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("path") / "coco"
    result = kcaption("export-shapes", root, "--n", 80, "--val", 16, "--test", 12, "--image-size", 96)
    assert result.returncode == 0, result.stderr
    again = kcaption("export-shapes", root, "--n", 80)
    assert again.returncode == 2 and "pass --force" in again.stderr and "Traceback" not in again.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "attn"])
def test_export_features_train_evaluate_and_caption_raw_images(coco, tmp_path, model):
    steps.require(REQUIRED_STEPS[model], "this test")
    # --small: 2 epochs, and no Java tools at the end of training (evaluate below runs them).
    result = kcaption("features", "--root", coco, *BACKBONE, "--small")
    assert result.returncode == 0, result.stderr[-3000:]
    store = coco / "features" / "mobilenet_v3_small-96px-random"
    assert (store / "karpathy-train-small" / "manifest.json").is_file(), sorted(p.name for p in store.iterdir())
    before = shard_times(store)

    out = tmp_path / "run"
    result = kcaption("train", "--data", "coco", "--root", coco, "--model", model, *BACKBONE, "--small",
                      "--batch-size", 16, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cached features" in result.stdout
    assert shard_times(store) == before, "train extracted the features again instead of reading the cache"
    assert runs.state(out) == "finished"
    config = json.loads((out / runs.CONFIG).read_text())["settings"]
    assert (config["backbone"], config["weights"], config["karpathy"]) == (
        "mobilenet_v3_small", "none", str(coco / "dataset_coco.json"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["split"], metrics["images"], metrics["epochs_run"]) == ("karpathy val", 16, 2)
    assert {"bleu1", "bleu4", "meteor", "rouge_l", "cider"} <= set(metrics)

    # A model trained on cached features captions raw image files through the backbone saved in front of it:
    # the first val images, which the run captioned from their cached features (metrics["samples"]).
    images = sorted((coco / "val2014").glob("*.jpg"))[:3]
    result = kcaption("caption", out / "model.keras", *images)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(str(images[0].parent))]
    assert [line.split(": ", 1)[1] for line in lines] == metrics["samples"][:3], result.stdout

    if model == "attn":  # the spatial features' path is trained and sampled above; evaluate is lstm's
        return
    # Paper-style evaluation of the saved model: the Karpathy test split, on the images (the model's own backbone).
    result = kcaption("evaluate", out / "model.keras", "--data", "coco", "--root", coco)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BLEU-4" in result.stdout and "CIDEr-D" in result.stdout
    evaluation = out / "eval-coco-test"
    scores = json.loads((evaluation / "metrics.json").read_text())
    assert (scores["split"], scores["images"]) == ("test", 12)
    results = json.loads((evaluation / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == list(range(97, 109))  # ids 1-80 train, 81-96 val, 97-108 test


    # The same model on an outside test set in COCO's format (a captions JSON and its images, as NICE ships).
    folder = tmp_path / "outside"
    shutil.copytree(coco / "val2014", folder / "images")
    shutil.copy(coco / "annotations" / "captions_val2014.json", folder / "captions.json")
    result = kcaption("evaluate", out / "model.keras", "--data", "folder", "--root", folder, "--beam-width", 2,
                      "--out", tmp_path / "outside-scores")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "beam search (k=2)" in result.stdout and "SPICE" in result.stdout
    scores = json.loads((tmp_path / "outside-scores" / "metrics.json").read_text())
    assert (scores["data"], scores["images"], scores["decoding"]) == ("folder", 28, "beam search (k=2)")
    results = json.loads((tmp_path / "outside-scores" / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == list(range(81, 109))  # val2014 holds Karpathy val and test
