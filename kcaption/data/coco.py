"""COCO captions: read the official files (and the Karpathy split), write and download them.

Layout read by `read_coco(root, split)` (as unpacked by `download_coco`):

    root/annotations/captions_train2014.json   {"images": [{"id", "file_name", ...}],
                                                 "annotations": [{"image_id", "caption"}]}
    root/train2014/COCO_train2014_000000000009.jpg
    root/dataset_coco.json                      Karpathy split (optional): {"images": [{"filepath",
                                                 "filename", "split", "cocoid", "sentences": [{"raw"}]}]}

Bad input, case by case:
- captions/split file missing: FileNotFoundError naming it (and how to get it);
- not UTF-8, not JSON, or a required field missing or of the wrong type:
  ValueError naming the file and the field (e.g. "images[3] has no 'file_name'");
- two entries of one image id (cocoid) naming different files, or (Karpathy)
  listing different sentences in one split: ValueError naming the file, the
  id and both entries (their captions would be mixed up); a repeated
  identical entry is read once and counted;
- (Karpathy) a split label other than train/val/test/restval (e.g. "Train"):
  the image is ignored, counted and named by id; an image listed in several
  splits is kept in the first one only, counted and named;
- image file missing, or not of a format the pipeline decodes (checked from
  its first bytes, always: e.g. a TIFF named .jpg), or (check_images=True)
  not decodable: the image is skipped and counted in the returned `ReadReport`;
- empty caption: skipped and counted; an image left with no caption is
  skipped and counted; a caption of an image id not in "images": counted.
The report is also logged (a warning when anything was skipped). Unknown
words and too-long captions are the vocabulary's and the pipeline's business
(`drop_long_captions`, `encode_captions`).
"""

import concurrent.futures
import contextlib
import dataclasses
import gc
import json
import logging
import os
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from PIL import Image

from kcaption.data.records import IMAGE_FORMATS, CaptionRecord, image_format
from kcaption.data.shapes import make_shapes
from kcaption.data.tokenize import tokenize
from kcaption.errors import ExistingOutputError, InputError

COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{split}.zip"
COCO_CAPTIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2014.zip"
KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
KARPATHY_SPLITS = ("train", "val", "test", "restval")
_log = logging.getLogger("kcaption.data")


@dataclasses.dataclass
class ReadReport:
    """What `read_coco` kept and what it skipped, with reasons. `print(report)` for a summary.

    Attributes:
        source: the file read (and the Karpathy split).
        images, captions: how many were kept.
        missing_images, corrupt_images, images_without_captions: the file
            names of the images skipped for each reason.
        unsupported_images: {file name: its format, e.g. "TIFF"} of the images
            skipped as not in `IMAGE_FORMATS`.
        empty_captions: empty captions skipped.
        orphan_captions: captions of an image id not in "images".
        repeated_entries: identical repeats of an image's entry, read once.
        unknown_splits: (Karpathy) {split label: image ids} of the images
            ignored for a label not in `KARPATHY_SPLITS`.
        split_conflicts: (Karpathy) {image id: its splits} of the images listed
            in several splits; each is kept in the first one only.
    """

    source: str
    images: int = 0
    captions: int = 0
    missing_images: list = dataclasses.field(default_factory=list)
    unsupported_images: dict = dataclasses.field(default_factory=dict)
    corrupt_images: list = dataclasses.field(default_factory=list)
    images_without_captions: list = dataclasses.field(default_factory=list)
    empty_captions: int = 0
    orphan_captions: int = 0
    repeated_entries: int = 0
    unknown_splits: dict = dataclasses.field(default_factory=dict)
    split_conflicts: dict = dataclasses.field(default_factory=dict)

    @property
    def skipped_images(self):
        return (
            len(self.missing_images)
            + len(self.unsupported_images)
            + len(self.corrupt_images)
            + len(self.images_without_captions)
        )

    @property
    def clean(self):
        """Whether nothing was skipped, ignored or repeated."""
        return not (
            self.skipped_images
            or self.empty_captions
            or self.orphan_captions
            or self.repeated_entries
            or self.unknown_splits
            or self.split_conflicts
        )

    def __str__(self):
        text = f"read {self.images} images, {self.captions} captions from {self.source}"
        unsupported = [f"{name} ({kind})" for name, kind in self.unsupported_images.items()]
        skipped = [
            (self.missing_images, "missing file"),
            (unsupported, f"unsupported format, not {'/'.join(IMAGE_FORMATS)}"),
            (self.corrupt_images, "corrupt image"),
            (self.images_without_captions, "no caption"),
        ]
        parts = [f"{len(names)} ({why}: {_examples(names)})" for names, why in skipped if names]
        if parts:
            text += f"; skipped {self.skipped_images} images: " + ", ".join(parts)
        if self.empty_captions:
            text += (
                f"; skipped {self.empty_captions} empty caption{'s' * (self.empty_captions > 1)}"
            )
        if self.orphan_captions:
            text += f"; ignored {self.orphan_captions} captions of unknown image ids"
        if self.repeated_entries:
            text += f"; read once {self.repeated_entries} repeated entries of an image"
        for label, ids in self.unknown_splits.items():
            text += (
                f"; ignored {len(ids)} images of unknown split {label!r} (ids: {_examples(ids)})"
            )
        if self.split_conflicts:
            listed = [f"{i} in {'+'.join(s)}" for i, s in self.split_conflicts.items()]
            text += (
                f"; {len(listed)} images listed in several splits, kept in the first only "
                f"({_examples(listed)})"
            )
        return text


def read_coco(root, split="val2014", karpathy_split=None, karpathy_file=None, check_images=True):
    """Read a COCO-format captions folder into records.

    Args:
        root: the folder (see the module docstring for its layout).
        split: the official split: captions from
            root/annotations/captions_<split>.json, images from root/<split>/.
        karpathy_split: None, or "train", "val", "test", "restval" (or several
            joined by "+", e.g. "train+restval"): read the Karpathy split file
            instead; `split` is then not used.
        karpathy_file: the Karpathy split file (default: root/dataset_coco.json).
        check_images: also decode every image once (JPEGs at reduced scale,
            in 16 threads) and skip the ones that fail: 2-3 ms of CPU a COCO
            image, minutes for all of COCO. Without it, only missing files and
            files of a format the pipeline does not decode are caught (from
            their first bytes: seconds for all of COCO), and a damaged file
            stops the pipeline with a TensorFlow decode error.

    Returns:
        (records, report): a list of `CaptionRecord` (image = file path, in the
        file's order) and a `ReadReport`.
    """
    with _garbage_collection_paused():
        return _read_coco(Path(root), split, karpathy_split, karpathy_file, check_images)


@contextlib.contextmanager
def _garbage_collection_paused():
    """Pause Python's cyclic garbage collector (reference counting still frees what is read).

    Reading COCO's files makes millions of lists and dicts, and every few
    hundred of them start a collection that walks them all: parsing the
    Karpathy file took 6 s with it, 1.2 s without.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_caption_folder(root, captions=None, images=None, check_images=True):
    """Read any COCO-format captions folder into records: one captions file and its images.

    An outside test set in COCO's format (e.g. NICE, nocaps' validation set, a
    folder of your own photos with captions) is scored this way:

        root/captions.json   {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}
        root/images/...      the image files, by `file_name`

    Args:
        root: the folder.
        captions: the captions file (default: the one .json file in root, or
            else in root/annotations).
        images: the folder `file_name` is relative to (default: root/images
            when it is a folder, else root).
        check_images: as in `read_coco`.

    Returns:
        (records, report), as `read_coco`. Bad input is reported as there.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; expected a folder with a captions JSON and its images.")
    path = Path(captions) if captions is not None else _only_json(root)
    image_dir = Path(images) if images is not None else (root / "images" if (root / "images").is_dir() else root)
    with _garbage_collection_paused():
        return _records(*_official_items(path, image_dir), check_images)


def _only_json(root):
    """The one .json file of `root` (else of root/annotations), or a ValueError naming what was found."""
    for folder in (root, root / "annotations"):
        found = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(
                f"{folder} holds {len(found)} .json files ({', '.join(p.name for p in found[:5])}); pass the "
                "captions file (--captions FILE)."
            )
    raise FileNotFoundError(f"{root}: no captions file (*.json) in it or in {root / 'annotations'}.")


def _read_coco(root, split, karpathy_split, karpathy_file, check_images):
    if karpathy_split is None:
        path = root / "annotations" / f"captions_{split}.json"
        items, report = _official_items(path, root / split)
    else:
        path = Path(karpathy_file) if karpathy_file is not None else root / "dataset_coco.json"
        items, report = _karpathy_items(path, root, karpathy_split)
    return _records(items, report, check_images)


def _records(items, report, check_images):
    """Records of the (image_id, folder, file name, captions) `items` whose image is there and readable."""
    paths = [os.path.join(folder, name) for _, folder, name, _ in items]  # str: Paths cost seconds
    records = []
    for (image_id, _, name, captions), path, problem in zip(
        items, paths, _check_images(paths, decode=check_images)
    ):
        kept = [c.strip() for c in captions if c.strip()]
        report.empty_captions += len(captions) - len(kept)
        if problem == "missing":
            report.missing_images.append(name)
        elif problem == "corrupt":
            report.corrupt_images.append(name)
        elif problem is not None:
            report.unsupported_images[name] = problem
        elif not kept:
            report.images_without_captions.append(name)
        else:
            records.append(CaptionRecord(str(image_id), path, kept))
    report.images = len(records)
    report.captions = sum(len(r.captions) for r in records)
    (_log.info if report.clean else _log.warning)("read_coco: %s", report)
    return records, report


def _official_items(path, image_dir):
    data = _load_json(path, hint="run `kcaption download-coco DIR` or `kcaption export-shapes DIR`")
    images = _field(data, "images", path, "the top level", list)
    annotations = _field(data, "annotations", path, "the top level", list)
    report = ReadReport(str(path))
    captions, entries = {}, {}  # image id -> its captions; -> (index, file name) of its entry
    ids = _column(images, "id", path, "images", (int, str))
    names = _column(images, "file_name", path, "images", str)
    for k, (image_id, file_name) in enumerate(zip(ids, names)):
        if image_id in entries:
            first, first_name = entries[image_id]
            if file_name != first_name:
                raise InputError(
                    f"{path}: images[{first}] and images[{k}] have the same id {image_id!r} but name "
                    f"different files, {first_name!r} and {file_name!r}: their captions would be "
                    "mixed up. Give each image its own id."
                )
            report.repeated_entries += 1
            continue
        entries[image_id] = (k, file_name)
        captions[image_id] = []
    image_ids = _column(annotations, "image_id", path, "annotations", (int, str))
    texts = _column(annotations, "caption", path, "annotations", str)
    for image_id, caption in zip(image_ids, texts):
        if image_id in captions:
            captions[image_id].append(caption)
        else:
            report.orphan_captions += 1
    items = [(i, str(image_dir), name, captions[i]) for i, (_, name) in entries.items()]
    return items, report


def _karpathy_items(path, root, karpathy_split):
    wanted = set(str(karpathy_split).split("+"))
    if not wanted <= set(KARPATHY_SPLITS):
        raise ValueError(
            f"karpathy_split must be one of {KARPATHY_SPLITS} or several joined by '+'. "
            f"Received: karpathy_split={karpathy_split!r}"
        )
    data = _load_json(path, hint="run `kcaption download-coco DIR` (it fetches dataset_coco.json)")
    images = _field(data, "images", path, "the top level", list)
    report = ReadReport(f"{path} ({karpathy_split})")
    entries = {}  # cocoid -> (index, split, file, captions) of its first entry
    columns = [
        _column(images, key, path, "images", kind)
        for key, kind in [
            ("split", str),
            ("filepath", str),
            ("filename", str),
            ("sentences", list),
            ("cocoid", (int, str)),
        ]
    ]
    for k, (split, folder, name, sentences, cocoid) in enumerate(zip(*columns)):
        file = (folder, name)
        captions = _column(sentences, "raw", path, f"images[{k}].sentences", str)
        if split not in KARPATHY_SPLITS:
            report.unknown_splits.setdefault(split, []).append(str(cocoid))
            continue
        if cocoid not in entries:
            entries[cocoid] = (k, split, file, captions)
            continue
        first, first_split, first_file, first_captions = entries[cocoid]
        if file != first_file or (split == first_split and captions != first_captions):
            differ = (
                f"name different files, {'/'.join(first_file)!r} and {'/'.join(file)!r}"
                if file != first_file
                else f"list different sentences in split {split!r}"
            )
            raise InputError(
                f"{path}: images[{first}] and images[{k}] have the same cocoid {cocoid!r} but "
                f"{differ}: their captions would be mixed up. Give each image one entry."
            )
        if split == first_split:
            report.repeated_entries += 1
        elif split not in report.split_conflicts.setdefault(str(cocoid), [first_split]):
            report.split_conflicts[str(cocoid)].append(split)
    root = str(root)
    items = [
        (cocoid, os.path.join(root, file[0]), file[1], captions)
        for cocoid, (_, split, file, captions) in entries.items()
        if split in wanted
    ]
    return items, report


def _load_json(path, hint):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path} ({hint}).")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error}).") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None


def _column(items, key, path, where, kind):
    """[item[key] for item in items], checked as `_field` checks (quick when all are right)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    try:
        values = [item[key] for item in items]
        if all(type(value) in kinds for value in values):
            return values
    except (KeyError, TypeError, IndexError):
        pass
    return [_field(item, key, path, f"{where}[{k}]", kind) for k, item in enumerate(items)]


def _field(item, key, path, where, kind):
    """item[key], checked: a ValueError naming the file and field when missing or mistyped."""
    if not isinstance(item, dict) or key not in item:
        raise ValueError(f"{path}: {where} has no {key!r} field (is this a COCO captions file?).")
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: {where}[{key!r}] should be {names}. Received: {value!r}")
    return value


def _check_images(paths, decode, threads=16):
    """For each path, None if the image is usable, else why not: "missing", "corrupt" or its format.

    Its format ("TIFF", ...) when not one of `IMAGE_FORMATS`; "corrupt" when not
    an image, or (decode=True) when Pillow cannot decode it. Several threads
    check at once: on a cold disk reading 100k files is mostly waiting, and
    Pillow decodes without holding the GIL (contiguous chunks keep the
    overhead per file low).
    """

    def check(path):
        try:
            kind = image_format(path)
        except OSError:
            return "missing"
        if kind is None or (kind in IMAGE_FORMATS and decode and not _decodes(path)):
            return "corrupt"
        return None if kind in IMAGE_FORMATS else kind

    size = max(1, -(-len(paths) // threads))
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        chunks = [paths[k : k + size] for k in range(0, len(paths), size)]
        return [
            problem
            for chunk in pool.map(lambda c: [check(p) for p in c], chunks)
            for problem in chunk
        ]


def _decodes(path):
    """Whether PIL can decode the whole image (JPEGs at 1/8 scale: a truncated file still fails)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (image.width // 8 or 1, image.height // 8 or 1))
            image.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _examples(names, limit=3):
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def export_shapes(
    dir, n=100, split=None, seed=0, image_size=64, *, n_val=None, n_test=None, force=False
):
    """Write shapes images as a COCO-format folder, to run the COCO path offline.

    By default, COCO 2014's layout, with a Karpathy split file:

        DIR/train2014/COCO_train2014_<id>.jpg    n images         Karpathy split "train"
        DIR/val2014/COCO_val2014_<id>.jpg        n_val images     "val"
                                                 then n_test      "test"
        DIR/annotations/captions_train2014.json, DIR/annotations/captions_val2014.json
        DIR/dataset_coco.json

    so `read_coco(DIR, "train2014")` and `read_coco(DIR, karpathy_split="test")`
    both work. Image ids are 1, 2, ... across the splits (train, then val, then
    test), unique as COCO's are: image id i is `make_shapes(N, seed)[i - 1]`
    for N images in all. JPEG quality 95, no chroma subsampling.

    Args:
        dir: the folder to write.
        n: images in train2014 (or in `split`).
        split: None, or one split name (e.g. "val2014"): write that split
            alone, n images with ids 1..n, and no Karpathy file.
        seed: the shapes seed.
        image_size: the images' side in pixels, at least 32.
        n_val: validation images (default: n // 5, at least 1).
        n_test: test images (default: n_val).
        force: replace what is there (image files that the new export does
            not write are left, listed nowhere). Without it, an existing
            captions file or Karpathy file, or a non-empty images folder, of a
            split to be written raises `ExistingOutputError` naming it.

    Returns:
        Path(dir).
    """
    if split is not None and (n_val is not None or n_test is not None):
        raise InputError(
            "n_val and n_test are for the train/val export (split=None). "
            f"Received: split={split!r}, n_val={n_val!r}, n_test={n_test!r}"
        )
    for name, count in [("n", n), ("n_val", n_val), ("n_test", n_test)]:
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 0
        ):
            raise InputError(f"{name} must be an int >= 0. Received: {name}={count!r}")
    if split is None:
        n_val = max(1, n // 5) if n_val is None else n_val
        n_test = n_val if n_test is None else n_test
        layout = [("train2014", "train", n), ("val2014", "val", n_val), ("val2014", "test", n_test)]
    else:
        layout = [(split, None, n)]
    root = Path(dir)
    folders = list(dict.fromkeys(folder for folder, _, _ in layout))
    outputs = [root / "annotations" / f"captions_{folder}.json" for folder in folders]
    outputs += [root / "dataset_coco.json"] if split is None else []
    if not force:
        _refuse_existing(outputs, [root / folder for folder in folders])
    for folder in folders + ["annotations"]:
        (root / folder).mkdir(parents=True, exist_ok=True)
    places = [(folder, label) for folder, label, count in layout for _ in range(count)]
    coco = {folder: {"images": [], "annotations": []} for folder in folders}
    karpathy = []
    records = make_shapes(len(places), seed=seed, image_size=image_size)
    for image_id, ((folder, label), record) in enumerate(zip(places, records), start=1):
        file_name = f"COCO_{folder}_{image_id:012d}.jpg"
        Image.fromarray(record.image).save(root / folder / file_name, quality=95, subsampling=0)
        images, annotations = coco[folder]["images"], coco[folder]["annotations"]
        images.append(
            {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
        )
        for caption in record.captions:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "caption": caption}
            )
        sentences = [
            {"raw": c, "tokens": [t for t in tokenize(c) if t.isalnum()]} for c in record.captions
        ]
        karpathy.append(
            {
                "filepath": folder,
                "filename": file_name,
                "split": label,
                "cocoid": image_id,
                "sentences": sentences,
            }
        )
    info = {"description": f"kcaption shapes (seed {seed}) in COCO captions format"}
    for folder, data in coco.items():
        text = json.dumps({"info": info, **data})
        (root / "annotations" / f"captions_{folder}.json").write_text(text, encoding="utf-8")
    if split is None:
        text = json.dumps({"images": karpathy, "dataset": "coco"})
        (root / "dataset_coco.json").write_text(text, encoding="utf-8")
    return root


def _refuse_existing(files, folders):
    """Raise an ExistingOutputError naming the first file that exists, or folder not empty."""
    for path in files:
        if path.exists():
            raise ExistingOutputError(f"{path} exists: pass --force (force=True) to replace it.")
    for folder in folders:
        held = next(folder.iterdir(), None) if folder.is_dir() else None
        if held is not None:
            raise ExistingOutputError(
                f"{folder} holds files ({held.name}, ...): pass --force (force=True) to replace "
                "them."
            )


def download_coco(dir, splits=("train2014", "val2014"), karpathy=True, opener=None, progress=True):
    """Download and unpack COCO 2014 captions and images (and the Karpathy split) into DIR.

    Each zip is downloaded to DIR/<name>.part and resumed from where it
    stopped (an HTTP Range request) when the command is run again; once
    complete it is unpacked and deleted, and a marker file makes later runs
    skip it. The images are about 13 GB (train2014) and 6 GB (val2014).

    Args:
        dir: the COCO folder to fill (the `root` of `read_coco`).
        splits: image splits among "train2014", "val2014", "test2014".
        karpathy: also fetch the Karpathy split file dataset_coco.json.
        opener: how to open a `urllib.request.Request` (default urlopen);
            tests pass a fake.
        progress: print progress to stderr.

    Returns:
        Path(dir).
    """
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    unknown = set(splits) - {"train2014", "val2014", "test2014"}
    if unknown:
        raise ValueError(
            f"COCO 2014 splits are train2014, val2014, test2014. Received: splits={list(splits)}"
        )
    urls = [COCO_CAPTIONS_URL] + [COCO_IMAGES_URL.format(split=s) for s in splits]
    if karpathy:
        urls.append(KARPATHY_URL)
    for url in urls:
        name = url.rsplit("/", 1)[1]
        marker = root / f".{name}.unpacked"
        if marker.exists():
            continue
        archive = download_file(url, root / name, opener=opener, progress=progress)
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.namelist()
                if url == KARPATHY_URL:  # it also holds the Flickr splits
                    members = [m for m in members if m.endswith("dataset_coco.json")]
                zipped.extractall(root, members)
        except zipfile.BadZipFile:
            archive.unlink()
            raise OSError(
                f"{archive} was not a zip file (deleted). Run again to download it again."
            ) from None
        for member in members if url == KARPATHY_URL else []:
            (root / member).replace(root / "dataset_coco.json")
        archive.unlink()
        marker.touch()
    return root


def download_file(url, dest, *, opener=None, chunk_size=1 << 20, progress=True):
    """Download `url` to `dest`, resuming a partial DEST.part with an HTTP Range request.

    A server that ignores the range (status 200) restarts the file from the
    beginning; "range not satisfiable" (416) means the part is already whole.

    Raises:
        OSError: the connection ended before Content-Length bytes arrived
            (run again to resume).
    """
    opener = opener or urllib.request.urlopen
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = opener(request)
    except urllib.error.HTTPError as error:
        if error.code != 416:
            raise
        part.replace(dest)
        return dest
    with response:
        if (getattr(response, "status", None) or 200) != 206:
            done = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        shown = -1
        with open(part, "ab" if done else "wb") as file:
            while chunk := response.read(chunk_size):
                file.write(chunk)
                done += len(chunk)
                if progress and total and (percent := 100 * done // total) != shown:
                    shown = percent
                    print(
                        f"\r{dest.name}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB ({percent}%)",
                        end="",
                        file=sys.stderr,
                    )
    if progress:
        print(file=sys.stderr)
    if total is not None and done != total:
        raise OSError(
            f"Incomplete download of {url}: {done} of {total} bytes. Run again to resume."
        )
    part.replace(dest)
    return dest
