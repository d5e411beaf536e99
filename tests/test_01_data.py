"""Lesson 01: data. The graded warm-up (decode_captions), then the kit's data layer.

The decode_captions tests grade the step; the vocabulary tests count for it too
(the Vocabulary class is kit code in the step's file, kit_code=True); the rest
check the tokenizers, shapes generator, COCO reader and tf.data pipeline the
course runs on. A graded test is a scenario (a plain function that runs the
student's code on the arguments it gets and returns plain values) and a judge
(the test: inputs, expected values, verdict); see kcaption/grading/sandbox.py.
"""

import dataclasses
import io
import json
import logging
import subprocess
import sys
import tempfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kcaption import mistakes
from kcaption.data import (
    END,
    NULL,
    SPECIAL_TOKENS,
    START,
    UNK,
    CaptionRecord,
    Vocabulary,
    coco,
    decode_captions,
    download_coco,
    export_shapes,
    image_dataset,
    load_shapes,
    make_dataset,
    make_shapes,
    read_coco,
    tf_tokenize,
    tokenize,
)
from kcaption.data.shapes import COLORS, SHAPES, SIZES
from kcaption.testing import assert_equal, plain_captions

REPO = Path(__file__).resolve().parents[1]
WORDS = ["a", "red", "circle", "blue", "square", "left", "of", "to", "the"]


@pytest.fixture
def vocab():
    """ids: <NULL>=0 <START>=1 <END>=2 <UNK>=3 a=4 red=5 circle=6 blue=7 square=8 left=9 of=10 to=11 the=12."""
    return Vocabulary(list(SPECIAL_TOKENS) + WORDS)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(12, seed=7)


@pytest.fixture(scope="module")
def shapes_vocab():
    return Vocabulary.build(c for r in load_shapes("train", n=300) for c in r.captions)


# ---------------------------------------------------------------- graded: decode_captions


def decode(ids, words):
    """Scenario: decode_captions(ids, Vocabulary(words))."""
    return plain_captions(decode_captions(ids, Vocabulary(words)))


@pytest.mark.step("data.decode_captions")
def test_decode_captions_batch(student, vocab):
    ids = np.array(
        [
            [1, 4, 5, 6, 2, 0, 0],  # <START> a red circle <END>
            [1, 4, 7, 8, 11, 12, 2],  # <START> a blue square to the <END>
            [1, 12, 3, 6, 2, 5, 5],  # <START> the <UNK> circle <END> (then junk after <END>)
        ]
    )
    got = student.run(decode, ids, vocab.words)
    assert_equal(got, ["a red circle", "a blue square to the", "the <UNK> circle"], what="decode_captions",
                 mistakes=mistakes.decode_captions(ids, vocab.words), hint="<UNK> (id 3) is a word like any other.")


@pytest.mark.step("data.decode_captions")
def test_decode_captions_one_sequence_gives_a_string(student, vocab):
    ids = np.array([1, 4, 5, 6, 2, 0])
    got = student.run(decode, ids, vocab.words)
    assert_equal(got, "a red circle", what="decode_captions of (T,) ids",
                 mistakes=mistakes.decode_captions(ids, vocab.words))


@pytest.mark.step("data.decode_captions")
def test_decode_captions_ignores_padding_and_start_anywhere(student, vocab):
    ids = np.array([[0, 1, 4, 0, 5, 2]])
    got = student.run(decode, ids, vocab.words)
    assert_equal(got, ["a red"], what="decode_captions", mistakes=mistakes.decode_captions(ids, vocab.words),
                 hint="<NULL> and <START> are skipped wherever they are.")


# ---------------------------------------------------------------- vocabulary (kit code in decode_captions's file)


def vocabulary_build(captions, min_count):
    """Scenario: Vocabulary.build(captions, min_count)."""
    vocab = Vocabulary.build(captions, min_count=min_count)
    return {"words": vocab.words, "word_to_id": vocab.word_to_id, "len": len(vocab)}


def special_ids():
    """Scenario: the ids of the special tokens."""
    return NULL, START, END, UNK


def vocabulary_words(words):
    """Scenario: Vocabulary(words).words."""
    return Vocabulary(words).words


def vocabulary_encode(words, caption, max_length):
    """Scenario: Vocabulary(words).encode(caption, max_length)."""
    return Vocabulary(words).encode(caption, max_length=max_length)


def vocabulary_unknown_words(words, caption):
    """Scenario: Vocabulary(words).unknown_words(caption)."""
    return Vocabulary(words).unknown_words(caption)


def vocabulary_round_trip(words, caption, max_length):
    """Scenario: decode(encode(caption))."""
    vocab = Vocabulary(words)
    return plain_captions(vocab.decode(vocab.encode(caption, max_length=max_length)))


def vocabulary_decode(words, ids):
    """Scenario: Vocabulary(words).decode(ids)."""
    return plain_captions(Vocabulary(words).decode(ids))


def vocabulary_save_load(words):
    """Scenario: save a vocabulary to a temporary folder, load it back."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vocab.json"
        Vocabulary(words).save(path)
        loaded = Vocabulary.load(path)
    return {"words": loaded.words, "word_to_id": loaded.word_to_id}


def vocabulary_load_bytes(content):
    """Scenario: Vocabulary.load on a file bad_vocab.json holding `content`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bad_vocab.json"
        path.write_bytes(content)
        return Vocabulary.load(path).words


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_build_orders_by_count_then_alphabet(student):
    built = student.run(vocabulary_build, ["A red circle.", "a blue circle", "a red square"], 1)
    assert built["words"] == [*SPECIAL_TOKENS, "a", "circle", "red", ".", "blue", "square"]
    assert built["word_to_id"]["circle"] == 5 and built["len"] == 10
    assert student.run(vocabulary_build, ["a red circle", "a blue circle"], 2)["words"][4:] == [
        "a",
        "circle",
    ]
    assert student.run(special_ids) == (0, 1, 2, 3)


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_encode_pads_marks_and_maps_unknown_words(student, vocab):
    ids = student.run(vocabulary_encode, vocab.words, "A red hexagon", 7)
    assert ids.dtype == np.int32 and ids.shape == (7,)
    assert ids.tolist() == [1, 4, 5, 3, 2, 0, 0]
    assert student.run(vocabulary_encode, vocab.words, "a a a a a", 7).tolist() == [1, 4, 4, 4, 4, 4, 2]  # exactly fits
    assert student.run(vocabulary_unknown_words, vocab.words, "a red hexagon , ok") == ["hexagon", ",", "ok"]


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_encode_rejects_a_too_long_caption_naming_it(student, vocab):
    with pytest.raises(ValueError, match="a red circle to the left of") as info:
        student.run(vocabulary_encode, vocab.words, "a red circle to the left of a blue square", 8)
    assert "max_length=8" in str(info.value)


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_decode_round_trips_encode(student, vocab):
    assert student.run(vocabulary_round_trip, vocab.words, "the blue square", 8) == "the blue square"
    with pytest.raises(ValueError, match="decode_captions"):
        student.run(vocabulary_decode, vocab.words, [[1, 4, 2]])


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_save_load_round_trip(student, vocab):
    loaded = student.run(vocabulary_save_load, vocab.words)
    assert loaded["words"] == vocab.words and loaded["word_to_id"] == vocab.word_to_id


@pytest.mark.step("data.decode_captions", kit_code=True)
@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe not utf-8 \x80", "not a UTF-8"),
        (b'{"words": ["<NULL>", ', "not valid JSON"),
        (b'{"tokens": []}', '"words"'),
        (b'{"words": ["a", "b"]}', "special tokens"),
    ],
    ids=["non-utf8", "malformed", "missing-field", "no-specials"],
)
def test_vocabulary_load_rejects_bad_files_naming_them(student, content, message):
    with pytest.raises(ValueError, match=message) as info:
        student.run(vocabulary_load_bytes, content)
    assert "bad_vocab.json" in str(info.value)


@pytest.mark.step("data.decode_captions", kit_code=True)
def test_vocabulary_rejects_repeated_words(student):
    with pytest.raises(ValueError, match="repeated"):
        student.run(vocabulary_words, [*SPECIAL_TOKENS, "a", "a"])


# ---------------------------------------------------------------- tokenize

TRICKY = [
    "A man riding a wave on top of a surfboard.",
    "Two dogs,   playing; in\tthe snow!",
    "A CAFÉ's sign: 'open' (24/7)",
    "an_underscore and 3.5 kg",
    "",
    "  ",
    "naïve façade über straße",
]


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A dog, running.") == ["a", "dog", ",", "running", "."]
    assert tokenize("Two  dogs\tplaying!") == ["two", "dogs", "playing", "!"]
    assert tokenize("a man's hat") == ["a", "man", "'", "s", "hat"]
    assert tokenize("") == []


def test_tf_tokenize_agrees_with_python_tokenize():
    ragged = tf_tokenize(tf.constant(TRICKY))
    assert isinstance(ragged, tf.RaggedTensor)
    got = [[t.decode("utf-8") for t in row] for row in ragged.to_list()]
    assert got == [tokenize(text) for text in TRICKY]


# ---------------------------------------------------------------- shapes


def test_shapes_are_deterministic_by_seed(shapes):
    again = make_shapes(12, seed=7)
    for a, b in zip(shapes, again):
        assert a.image_id == b.image_id and a.captions == b.captions and a.objects == b.objects
        np.testing.assert_array_equal(a.image, b.image)
    assert (
        make_shapes(5, seed=7)[4].captions == shapes[4].captions
    )  # record i depends on (seed, i) only
    other = make_shapes(12, seed=8)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(shapes, other))


def test_shapes_records_are_well_formed(shapes):
    for record in shapes:
        assert record.image.dtype == np.uint8 and record.image.shape == (64, 64, 3)
        assert len(record.captions) == 5 and len(set(record.captions)) == 5
        assert 1 <= len(record.objects) <= 3
        for obj in record.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64, f"box {obj.box} outside the image"
            assert obj.shape in SHAPES and obj.color in COLORS and obj.size in SIZES
        for i, a in enumerate(record.objects):
            for b in record.objects[i + 1 :]:
                overlap_x = min(a.box[2], b.box[2]) > max(a.box[0], b.box[0])
                overlap_y = min(a.box[3], b.box[3]) > max(a.box[1], b.box[1])
                assert not (overlap_x and overlap_y), f"{record.image_id}: boxes overlap"
        for caption in record.captions:
            assert len(tokenize(caption)) <= 15
            words = caption.split()
            for article, word in zip(words, words[1:]):
                if article in ("a", "an"):
                    assert article == ("an" if word[0] in "aeiou" else "a"), f"{caption!r}: a/an"


def test_shapes_pixels_show_the_objects(shapes):
    """The centre pixel of each object's box has the object's colour, not the background's."""
    for record in shapes:
        for obj in record.objects:
            cx, cy = (obj.box[0] + obj.box[2]) // 2, (obj.box[1] + obj.box[3]) // 2
            pixel = record.image[cy, cx] / 255.0
            nearest = min(COLORS, key=lambda c: np.sum((np.array(COLORS[c]) - pixel) ** 2))
            assert nearest == obj.color, (
                f"{record.image_id}: {obj} centre pixel {pixel} looks {nearest}"
            )


def _mentions(caption):
    """(size or None, colour, shape) for each "[size] colour shape" in a caption."""
    words = caption.split()
    found = []
    for i in range(1, len(words)):
        if words[i] in SHAPES and words[i - 1] in COLORS:
            size = words[i - 2] if i >= 2 and words[i - 2] in SIZES else None
            found.append((size, words[i - 1], words[i]))
    return found


def test_shapes_captions_describe_the_objects_and_their_places():
    for record in make_shapes(60, seed=3):
        objects = {(o.color, o.shape): o for o in record.objects}
        for caption in record.captions:
            mentioned = _mentions(caption)
            assert mentioned, f"{caption!r} names no object"
            for size, color, shape in mentioned:
                assert (color, shape) in objects, f"{caption!r}: no {color} {shape} in the image"
                assert size in (None, objects[color, shape].size), f"{caption!r}: wrong size"
            for relation in ("to the left of", "to the right of", "above", "below"):
                if f" {relation} " in caption:
                    first, second = (objects[m[1:]] for m in mentioned[:2])
                    dx = (first.box[0] + first.box[2]) / 2 - (second.box[0] + second.box[2]) / 2
                    dy = (first.box[1] + first.box[3]) / 2 - (second.box[1] + second.box[3]) / 2
                    expected = (
                        ("to the left of" if dx < 0 else "to the right of")
                        if abs(dx) >= abs(dy)
                        else ("above" if dy < 0 else "below")
                    )
                    assert relation == expected, f"{caption!r}: boxes say {expected!r}"


def test_shapes_vocabulary_is_small(shapes_vocab):
    assert 25 <= len(shapes_vocab) <= 50


def test_shapes_knobs():
    records = make_shapes(
        6, seed=1, image_size=96, min_objects=2, max_objects=2, captions_per_image=7
    )
    assert all(
        r.image.shape == (96, 96, 3) and len(r.objects) == 2 and len(r.captions) == 7
        for r in records
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n": -1}, "n="),
        ({"image_size": 16}, "image_size="),
        ({"max_objects": 4}, "max_objects=4"),
        ({"captions_per_image": 0}, "captions_per_image=0"),
    ],
)
def test_shapes_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_shapes(**{"n": 2, **kwargs})


def test_load_shapes_splits_are_fixed_and_disjoint():
    train, val = load_shapes("train", n=20), load_shapes("val")
    assert len(val) == 200
    assert not {r.image_id for r in train} & {r.image_id for r in val}
    assert all(not np.array_equal(a.image, b.image) for a, b in zip(train, val))
    assert load_shapes("train", n=3)[2].captions == train[2].captions
    with pytest.raises(ValueError, match="split='dev'"):
        load_shapes("dev")


# ---------------------------------------------------------------- COCO


@pytest.fixture
def coco_dir(tmp_path):
    return export_shapes(tmp_path / "coco", n=6, split="val2014", seed=5)


def _annotations(root, split="val2014"):
    return root / "annotations" / f"captions_{split}.json"


def test_export_shapes_then_read_coco_round_trips(coco_dir):
    records, report = read_coco(coco_dir, split="val2014")
    originals = make_shapes(6, seed=5)
    assert [r.captions for r in records] == [r.captions for r in originals]
    assert [r.image_id for r in records] == ["1", "2", "3", "4", "5", "6"]
    for record, original in zip(records, originals):
        diff = np.abs(record.load_image().astype(int) - original.image.astype(int))
        assert diff.mean() < 5, (
            f"{record.image_id}: mean |difference| {diff.mean():.1f} / 255 after JPEG"
        )
        assert record.objects is None
    assert report.images == 6 and report.captions == 30 and report.skipped_images == 0
    assert "read 6 images, 30 captions" in str(report)


def test_export_shapes_command_line(tmp_path):
    out = tmp_path / "cli"
    subprocess.run(
        [sys.executable, "-m", "kcaption.cli", "export-shapes", str(out), "--n", "8", "--split", "val2014"],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    records, report = read_coco(out)
    assert len(records) == 8 and report.skipped_images == 0
    assert len(list((out / "val2014").glob("*.jpg"))) == 8


def test_read_coco_skips_and_reports_missing_corrupt_and_empty(coco_dir, caplog):
    (coco_dir / "val2014" / "COCO_val2014_000000000001.jpg").unlink()
    (coco_dir / "val2014" / "COCO_val2014_000000000002.jpg").write_bytes(b"not a jpeg at all")
    third = coco_dir / "val2014" / "COCO_val2014_000000000003.jpg"
    third.write_bytes(third.read_bytes()[:300])  # truncated
    data = json.loads(_annotations(coco_dir).read_text())
    for annotation in data["annotations"]:
        if annotation["image_id"] == 4:
            annotation["caption"] = "   "  # every caption of image 4 empty
    data["annotations"][-1]["caption"] = ""  # one empty caption of image 6
    data["annotations"].append({"id": 999, "image_id": 12345, "caption": "an orphan"})
    _annotations(coco_dir).write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="kcaption.data"):
        records, report = read_coco(coco_dir)
    assert [r.image_id for r in records] == ["5", "6"]
    assert report.missing_images == ["COCO_val2014_000000000001.jpg"]
    assert report.corrupt_images == [
        "COCO_val2014_000000000002.jpg",
        "COCO_val2014_000000000003.jpg",
    ]
    assert report.images_without_captions == ["COCO_val2014_000000000004.jpg"]
    assert report.empty_captions == 6 and report.orphan_captions == 1
    assert len(records[1].captions) == 4 and report.captions == 9
    text = str(report)
    assert "skipped 4 images" in text and "missing file: COCO_val2014_000000000001.jpg" in text
    assert "6 empty captions" in text and "1 captions of unknown image ids" in text
    assert text in caplog.text


def test_read_coco_without_check_images_keeps_damaged_jpegs_and_the_pipeline_fails_loudly(coco_dir):
    bad = coco_dir / "val2014" / "COCO_val2014_000000000002.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # a JPEG's first bytes: only decoding tells
    (coco_dir / "val2014" / "COCO_val2014_000000000003.jpg").write_bytes(b"not a jpeg at all")
    records, report = read_coco(coco_dir, check_images=False)
    assert len(records) == 5 and report.corrupt_images == ["COCO_val2014_000000000003.jpg"]
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(make_dataset(records, vocab, batch_size=4))


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"images": [], "annotations": [\xff]}', "not a UTF-8"),
        (b'{"images": [], "annotations": [', "not valid JSON"),
        (b'{"annotations": []}', "the top level has no 'images'"),
        (b'{"images": [{"id": 1}], "annotations": []}', r"images\[0\] has no 'file_name'"),
        (
            b'{"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"image_id": 1}]}',
            r"annotations\[0\] has no 'caption'",
        ),
        (
            b'{"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"image_id": 1, "caption": 7}]}',
            r"annotations\[0\]\['caption'\] should be str",
        ),
        (b"[1, 2]", "the top level has no 'images'"),
    ],
    ids=[
        "non-utf8",
        "malformed",
        "no-images",
        "no-file-name",
        "no-caption",
        "caption-not-str",
        "not-object",
    ],
)
def test_read_coco_rejects_bad_json_naming_file_and_field(coco_dir, content, message):
    _annotations(coco_dir).write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_coco(coco_dir)
    assert "captions_val2014.json" in str(info.value)


def test_read_coco_missing_captions_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions_train2014.json.*download-coco"):
        read_coco(tmp_path, split="train2014")


def _write_karpathy(root):
    images = []
    for k, split in enumerate(["train", "val", "test", "restval", "train", "val"], start=1):
        images.append(
            {
                "filepath": "val2014",
                "filename": f"COCO_val2014_{k:012d}.jpg",
                "split": split,
                "cocoid": k,
                "sentences": [{"raw": f"caption {k} of {split}."}, {"raw": ""}],
            }
        )
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))


def test_read_coco_karpathy_split(coco_dir):
    _write_karpathy(coco_dir)
    records, report = read_coco(coco_dir, karpathy_split="train")
    assert [r.image_id for r in records] == ["1", "5"]
    assert records[0].captions == ["caption 1 of train."] and report.empty_captions == 2
    assert Path(records[0].image) == coco_dir / "val2014" / "COCO_val2014_000000000001.jpg"
    records, _ = read_coco(coco_dir, karpathy_split="train+restval")
    assert [r.image_id for r in records] == ["1", "4", "5"]
    moved = coco_dir / "elsewhere.json"
    (coco_dir / "dataset_coco.json").rename(moved)
    records, _ = read_coco(coco_dir, karpathy_split="test", karpathy_file=moved)
    assert [r.image_id for r in records] == ["3"]
    with pytest.raises(ValueError, match="karpathy_split='dev'"):
        read_coco(coco_dir, karpathy_split="dev", karpathy_file=moved)


def test_read_coco_karpathy_missing_field(coco_dir):
    (coco_dir / "dataset_coco.json").write_text(
        json.dumps({"images": [{"split": "train", "filepath": "val2014"}]})
    )
    with pytest.raises(ValueError, match=r"dataset_coco.json: images\[0\] has no 'filename'"):
        read_coco(coco_dir, karpathy_split="train")


# ---------------------------------------------------------------- download (never the network)


class FakeServer:
    """An opener serving `files` by URL, honouring (or ignoring) Range, optionally cutting off."""

    def __init__(self, files, honour_range=True, cut_after=None):
        self.files, self.honour_range, self.cut_after, self.requests = (
            files,
            honour_range,
            cut_after,
            [],
        )

    def __call__(self, request):
        self.requests.append(request)
        data = self.files[request.full_url]
        start = 0
        header = request.get_header("Range")
        if header and self.honour_range:
            start = int(header.split("=")[1].rstrip("-"))
            if start >= len(data):
                raise urllib.error.HTTPError(
                    request.full_url, 416, "Range Not Satisfiable", {}, None
                )
        body = data[start:]
        response = _Response(body[: self.cut_after] if self.cut_after else body, len(body))
        response.status = 206 if start else 200
        return response


class _Response(io.BytesIO):
    def __init__(self, body, length):
        super().__init__(body)
        self.headers = {"Content-Length": str(length)}


URL = "http://example.com/big.zip"
PAYLOAD = bytes(range(256)) * 40


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path):
    (tmp_path / "big.zip.part").write_bytes(PAYLOAD[:1000])
    server = FakeServer({URL: PAYLOAD})
    path = coco.download_file(
        URL, tmp_path / "big.zip", opener=server, chunk_size=64, progress=False
    )
    assert server.requests[0].get_header("Range") == "bytes=1000-"
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "big.zip.part").exists()


def test_download_restarts_when_the_server_ignores_the_range(tmp_path):
    (tmp_path / "big.zip.part").write_bytes(b"stale bytes")
    path = coco.download_file(
        URL,
        tmp_path / "big.zip",
        opener=FakeServer({URL: PAYLOAD}, honour_range=False),
        progress=False,
    )
    assert path.read_bytes() == PAYLOAD


def test_download_interrupted_then_resumed(tmp_path, capsys):
    with pytest.raises(OSError, match="Run again to resume"):
        coco.download_file(
            URL, tmp_path / "big.zip", opener=FakeServer({URL: PAYLOAD}, cut_after=3000)
        )
    assert (tmp_path / "big.zip.part").stat().st_size == 3000
    server = FakeServer({URL: PAYLOAD})
    coco.download_file(URL, tmp_path / "big.zip", opener=server)
    assert server.requests[0].get_header("Range") == "bytes=3000-"
    assert (tmp_path / "big.zip").read_bytes() == PAYLOAD
    assert "big.zip" in capsys.readouterr().err  # progress


def test_download_complete_part_gets_416_and_is_kept(tmp_path):
    (tmp_path / "big.zip.part").write_bytes(PAYLOAD)
    path = coco.download_file(
        URL, tmp_path / "big.zip", opener=FakeServer({URL: PAYLOAD}), progress=False
    )
    assert path.read_bytes() == PAYLOAD


def test_download_from_a_local_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    path = coco.download_file(source.as_uri(), tmp_path / "copy.bin", progress=False)
    assert path.read_bytes() == PAYLOAD


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def test_download_coco_unpacks_each_archive_once(tmp_path):
    files = {
        coco.COCO_CAPTIONS_URL: _zip(
            {"annotations/captions_val2014.json": '{"images": [], "annotations": []}'}
        ),
        coco.COCO_IMAGES_URL.format(split="val2014"): _zip(
            {"val2014/COCO_val2014_000000000001.jpg": b"jpeg"}
        ),
        coco.KARPATHY_URL: _zip(
            {"dataset_coco.json": '{"images": []}', "dataset_flickr8k.json": "{}"}
        ),
    }
    server = FakeServer(files)
    root = download_coco(tmp_path / "coco", splits=["val2014"], opener=server, progress=False)
    assert (root / "annotations" / "captions_val2014.json").is_file()
    assert (root / "val2014" / "COCO_val2014_000000000001.jpg").read_bytes() == b"jpeg"
    assert (root / "dataset_coco.json").is_file() and not (root / "dataset_flickr8k.json").exists()
    assert not list(root.glob("*.zip"))
    download_coco(root, splits=["val2014"], opener=server, progress=False)
    assert len(server.requests) == 3, "a second run must not download again"
    with pytest.raises(ValueError, match="splits="):
        download_coco(root, splits=["train2017"], opener=server)


def test_download_coco_deletes_a_download_that_is_not_a_zip(tmp_path):
    server = FakeServer({coco.COCO_CAPTIONS_URL: b"<html>503 Service Unavailable</html>"})
    with pytest.raises(OSError, match="annotations_trainval2014.zip was not a zip file"):
        download_coco(tmp_path, splits=[], karpathy=False, opener=server, progress=False)
    assert not list(tmp_path.glob("*.zip*")), "a bad download must not be kept as if complete"


# ---------------------------------------------------------------- pipeline


def test_pipeline_element_spec_and_teacher_forcing(shapes, shapes_vocab):
    ds = make_dataset(shapes, shapes_vocab, batch_size=8, max_length=17)
    (images_spec, in_spec), out_spec = ds.element_spec
    assert images_spec.shape.as_list() == [None, 64, 64, 3] and images_spec.dtype == tf.float32
    assert in_spec.shape.as_list() == [None, 16] and in_spec.dtype == tf.int32
    assert out_spec.shape.as_list() == [None, 16] and out_spec.dtype == tf.int32
    batches = list(ds)
    assert sum(len(b[1]) for b in batches) == 60, (
        "'all' makes one example per (image, caption): 12 x 5"
    )
    for (images, captions_in), captions_out in batches:
        assert (captions_in[:, 0].numpy() == START).all()
        np.testing.assert_array_equal(captions_in[:, 1:], captions_out[:, :-1])
        assert 0.0 <= images.numpy().min() and images.numpy().max() <= 1.0


def test_pipeline_keeps_images_and_captions_together_in_order(shapes, shapes_vocab):
    (images, captions_in), captions_out = next(
        iter(make_dataset(shapes, shapes_vocab, batch_size=10))
    )
    for k in range(10):
        record = shapes[k // 5]
        np.testing.assert_allclose(images[k], record.image / 255.0, atol=1e-6)
        tokens = shapes_vocab.encode(record.captions[k % 5])
        np.testing.assert_array_equal(captions_in[k], tokens[:-1])
        np.testing.assert_array_equal(captions_out[k], tokens[1:])


def test_pipeline_first_and_random_captions(shapes, shapes_vocab):
    first = list(make_dataset(shapes, shapes_vocab, batch_size=12, captions="first"))
    assert len(first) == 1
    expected = np.stack([shapes_vocab.encode(r.captions[0]) for r in shapes])
    np.testing.assert_array_equal(first[0][1], expected[:, 1:])
    ds = make_dataset(shapes, shapes_vocab, batch_size=12, captions="random", seed=0)
    epochs = [next(iter(ds))[1].numpy() for _ in range(4)]
    for epoch in epochs:
        for row, record in zip(epoch, shapes):
            assert shapes_vocab.decode(np.concatenate([[START], row])) in record.captions
    assert any(not np.array_equal(epochs[0], e) for e in epochs[1:]), (
        "'random' should redraw each epoch"
    )


def test_pipeline_grouped_captions(shapes, shapes_vocab):
    from kcaption.data.pipeline import GROUP_SIZE

    records = [dataclasses.replace(shapes[0], captions=shapes[0].captions[:2]), *shapes[1:]]
    ds = make_dataset(records, shapes_vocab, batch_size=12, captions="grouped", seed=0)
    epochs = []
    for _ in range(4):
        (images, captions_in), captions_out = next(iter(ds))
        assert images.shape[0] == 12 and captions_in.shape == (12, GROUP_SIZE, 16) == captions_out.shape
        np.testing.assert_array_equal(captions_in[..., 1:], captions_out[..., :-1])
        decoded = [[shapes_vocab.decode(np.concatenate([[START], row])) for row in group] for group in captions_out]
        # Every caption of an image with >= GROUP_SIZE captions once; the 2 of records[0] cycled.
        for group, record in zip(decoded[1:], records[1:]):
            assert sorted(group) == sorted(record.captions[:GROUP_SIZE])
        assert sorted(set(decoded[0])) == sorted(records[0].captions) and len(decoded[0]) == GROUP_SIZE
        epochs.append(captions_in.numpy())
    assert any(not np.array_equal(epochs[0], e) for e in epochs[1:]), "'grouped' should redraw the order each epoch"


@pytest.mark.parametrize("cache", [None, "memory"])
def test_pipeline_shuffle_keeps_the_examples(shapes, shapes_vocab, cache):
    def examples(ds):
        return sorted(
            (int(np.round(img.numpy().sum() * 255)), tuple(c.numpy()))
            for (imgs, caps), _ in ds
            for img, c in zip(imgs, caps)
        )

    plain = make_dataset(shapes, shapes_vocab, batch_size=16)
    shuffled = make_dataset(shapes, shapes_vocab, batch_size=16, shuffle=True, seed=3, cache=cache)
    first = next(iter(shuffled))[0][1].numpy()
    assert not np.array_equal(first, next(iter(plain))[0][1].numpy())
    assert examples(shuffled) == examples(plain), "shuffling must keep every (image, caption) pair"


def test_pipeline_drop_remainder_gives_static_batches(shapes, shapes_vocab):
    ds = make_dataset(shapes, shapes_vocab, batch_size=16, drop_remainder=True)
    assert ds.element_spec[1].shape.as_list() == [16, 16]
    assert len(list(ds)) == 3


def test_pipeline_caches_to_disk_with_a_fingerprint(tmp_path, shapes, shapes_vocab):
    prefix = tmp_path / "cache" / "shapes"
    ds = make_dataset(shapes, shapes_vocab, batch_size=16, cache=str(prefix))
    first = [b[1].numpy() for b in ds]
    files = sorted(p.name for p in prefix.parent.iterdir())
    assert any(name.endswith(".index") for name in files), files
    second = [b[1].numpy() for b in ds]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    other = make_dataset(shapes[:4], shapes_vocab, batch_size=16, cache=str(prefix))
    assert sum(len(b[1]) for b in other) == 20, "a cache of other records must not be read"
    assert len(list(prefix.parent.glob("*.index"))) == 2
    memory = make_dataset(shapes, shapes_vocab, batch_size=16, cache="memory")
    np.testing.assert_array_equal(
        np.concatenate([b[1].numpy() for b in memory]), np.concatenate(first)
    )


def test_pipeline_reads_jpeg_and_png_files_and_resizes(tmp_path, shapes_vocab):
    records, _ = read_coco(export_shapes(tmp_path / "coco", n=3, split="val2014", seed=1))
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 50), 200, np.uint8)).save(gray)
    records.append(CaptionRecord("gray", str(gray), ["a small red circle"]))
    ds = make_dataset(records, shapes_vocab, batch_size=32, image_size=32, captions="first")
    (images, _), _ = next(iter(ds))
    assert images.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(images[3], 200 / 255.0, atol=1e-2)
    reference = (
        np.asarray(Image.open(records[0].image).convert("RGB").resize((32, 32), Image.BILINEAR))
        / 255.0
    )
    assert np.abs(images[0].numpy() - reference).mean() < 0.05


def test_pipeline_too_long_captions_error_or_skip(shapes_vocab, caplog):
    records = make_shapes(2, seed=1)
    records[1].captions[2] = "a small red circle to the left of a large blue square and a green one"
    with pytest.raises(
        ValueError, match=f"Image '{records[1].image_id}'.*a small red circle to the left"
    ):
        make_dataset(records, shapes_vocab, max_length=17)
    with caplog.at_level(logging.WARNING, logger="kcaption.data"):
        ds = make_dataset(records, shapes_vocab, max_length=17, too_long="skip")
    assert sum(len(b[1]) for b in ds) == 9
    assert "skipped 1 too long" in caplog.text
    with pytest.raises(ValueError, match="too_long='drop'"):
        make_dataset(records, shapes_vocab, too_long="drop")


def test_pipeline_unknown_words_become_unk_and_are_reported(shapes_vocab, caplog):
    records = [CaptionRecord("x", make_shapes(1)[0].image, ["a zebra near a giraffe"])]
    with caplog.at_level(logging.WARNING, logger="kcaption.data"):
        (_, captions_in), _ = next(iter(make_dataset(records, shapes_vocab)))
    a = shapes_vocab.word_to_id["a"]
    assert captions_in[0].numpy().tolist()[:7] == [START, a, UNK, UNK, a, UNK, END]
    assert "3 unknown words" in caplog.text and "zebra, near, giraffe" in caplog.text


@pytest.mark.parametrize(
    "records, kwargs, message",
    [
        ([], {}, "records=\\[\\]"),
        (None, {"captions": "every"}, "captions='every'"),
        (None, {"batch_size": 0}, "batch_size=0"),
        ("mixed", {}, "mix"),
        ("float", {}, "uint8"),
    ],
    ids=["empty", "bad-mode", "bad-batch", "mixed", "float-images"],
)
def test_pipeline_bad_arguments(shapes, shapes_vocab, records, kwargs, message):
    if records is None:
        records = shapes
    elif records == "mixed":
        records = [shapes[0], CaptionRecord("f", "some/file.jpg", ["a red circle"])]
    elif records == "float":
        records = [CaptionRecord("f", shapes[0].image / 255.0, ["a red circle"])]
    with pytest.raises(ValueError, match=message):
        make_dataset(records, shapes_vocab, **kwargs)


def test_image_dataset_keeps_record_order(shapes):
    batches = list(image_dataset(shapes, batch_size=5, image_size=64))
    assert [len(b) for b in batches] == [5, 5, 2]
    np.testing.assert_allclose(
        np.concatenate(batches), np.stack([r.image for r in shapes]) / 255.0, atol=1e-6
    )
