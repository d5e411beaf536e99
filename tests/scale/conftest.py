"""Shared fixtures of the COCO-scale tests: a small COCO-format export, written once per run.

Read-only: a test that needs to change a file copies it first.
"""

import pytest

from kcaption.data import Vocabulary, export_shapes, read_coco

COCO_IMAGES = 24  # enough for a few shards and batches, seconds to write and encode
COCO_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory):
    """A COCO-format folder of COCO_IMAGES shapes images, 64 px, split "train2014" (ids 1..24)."""
    root = tmp_path_factory.mktemp("coco") / "coco"
    return export_shapes(root, n=COCO_IMAGES, split="train2014", image_size=COCO_IMAGE_SIZE)


@pytest.fixture(scope="session")
def coco_records(coco_root):
    """`read_coco`'s records of `coco_root`, in image id order."""
    records, _ = read_coco(coco_root, "train2014")
    return records


@pytest.fixture(scope="session")
def coco_vocab(coco_records):
    """The vocabulary of `coco_records`' captions (every word)."""
    return Vocabulary.build(c for r in coco_records for c in r.captions)
