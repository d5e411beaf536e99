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
- image file missing, or (check_images=True) not a decodable image: the image
  is skipped and counted in the returned `ReadReport`;
- empty caption: skipped and counted; an image left with no caption is
  skipped and counted; a caption of an image id not in "images": counted.
The report is also logged (a warning when anything was skipped). Unknown
words and too-long captions are the pipeline's business (`encode_captions`).
"""

import dataclasses
import json
import logging
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from PIL import Image

from kcaption.data.records import CaptionRecord
from kcaption.data.shapes import make_shapes

COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{split}.zip"
COCO_CAPTIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2014.zip"
KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
KARPATHY_SPLITS = ("train", "val", "test", "restval")
_log = logging.getLogger("kcaption.data")


@dataclasses.dataclass
class ReadReport:
    """What `read_coco` kept and what it skipped, with reasons. `print(report)` for a summary."""

    source: str
    images: int = 0
    captions: int = 0
    missing_images: list = dataclasses.field(default_factory=list)
    corrupt_images: list = dataclasses.field(default_factory=list)
    images_without_captions: list = dataclasses.field(default_factory=list)
    empty_captions: int = 0
    orphan_captions: int = 0

    @property
    def skipped_images(self):
        return (
            len(self.missing_images) + len(self.corrupt_images) + len(self.images_without_captions)
        )

    def __str__(self):
        text = f"read {self.images} images, {self.captions} captions from {self.source}"
        skipped = [
            (self.missing_images, "missing file"),
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
        check_images: decode every image once (JPEGs at reduced scale, so it
            is quick) and skip the ones that fail. Without it, only missing
            files are caught here, and a corrupt file stops the pipeline with
            a TensorFlow decode error.

    Returns:
        (records, report): a list of `CaptionRecord` (image = file path, in the
        file's order) and a `ReadReport`.
    """
    root = Path(root)
    if karpathy_split is None:
        path = root / "annotations" / f"captions_{split}.json"
        items, report = _official_items(path, root / split)
    else:
        path = Path(karpathy_file) if karpathy_file is not None else root / "dataset_coco.json"
        items, report = _karpathy_items(path, root, karpathy_split)
    records = []
    for image_id, image_path, captions in items:
        kept = [c.strip() for c in captions if c.strip()]
        report.empty_captions += len(captions) - len(kept)
        if not image_path.is_file():
            report.missing_images.append(image_path.name)
        elif check_images and not _decodes(image_path):
            report.corrupt_images.append(image_path.name)
        elif not kept:
            report.images_without_captions.append(image_path.name)
        else:
            records.append(CaptionRecord(str(image_id), str(image_path), kept))
    report.images = len(records)
    report.captions = sum(len(r.captions) for r in records)
    (_log.warning if report.skipped_images or report.empty_captions else _log.info)(
        "read_coco: %s", report
    )
    return records, report


def _official_items(path, image_dir):
    data = _load_json(path, hint="run `kcaption download-coco DIR` or `kcaption export-shapes DIR`")
    images = _field(data, "images", path, "the top level", list)
    annotations = _field(data, "annotations", path, "the top level", list)
    report = ReadReport(str(path))
    captions = {}
    for k, image in enumerate(images):
        image_id = _field(image, "id", path, f"images[{k}]", (int, str))
        _field(image, "file_name", path, f"images[{k}]", str)
        captions[image_id] = []
    for k, annotation in enumerate(annotations):
        image_id = _field(annotation, "image_id", path, f"annotations[{k}]", (int, str))
        caption = _field(annotation, "caption", path, f"annotations[{k}]", str)
        if image_id in captions:
            captions[image_id].append(caption)
        else:
            report.orphan_captions += 1
    items = [
        (image["id"], image_dir / image["file_name"], captions[image["id"]]) for image in images
    ]
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
    items = []
    for k, image in enumerate(images):
        where = f"images[{k}]"
        if _field(image, "split", path, where, str) not in wanted:
            continue
        folder = _field(image, "filepath", path, where, str)
        name = _field(image, "filename", path, where, str)
        sentences = _field(image, "sentences", path, where, list)
        captions = [
            _field(s, "raw", path, f"{where}.sentences[{j}]", str) for j, s in enumerate(sentences)
        ]
        items.append(
            (_field(image, "cocoid", path, where, (int, str)), root / folder / name, captions)
        )
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


def _field(item, key, path, where, kind):
    """item[key], checked: a ValueError naming the file and field when missing or mistyped."""
    if not isinstance(item, dict) or key not in item:
        raise ValueError(f"{path}: {where} has no {key!r} field (is this a COCO captions file?).")
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: {where}[{key!r}] should be {names}. Received: {value!r}")
    return value


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


def export_shapes(dir, n=100, split="val2014", seed=0, image_size=64):
    """Write shapes images as a COCO-format folder (for testing COCO code offline).

    Writes DIR/<split>/COCO_<split>_<id>.jpg (JPEG quality 95, no chroma
    subsampling) and DIR/annotations/captions_<split>.json. COCO image ids
    are 1..n, so read_coco's record i has image_id str(i + 1).

    Returns:
        Path(dir).
    """
    root = Path(dir)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, record in enumerate(make_shapes(n, seed=seed, image_size=image_size), start=1):
        file_name = f"COCO_{split}_{index:012d}.jpg"
        Image.fromarray(record.image).save(root / split / file_name, quality=95, subsampling=0)
        images.append(
            {"id": index, "file_name": file_name, "width": image_size, "height": image_size}
        )
        for caption in record.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": index, "caption": caption})
    data = {
        "info": {"description": f"kcaption shapes (seed {seed}) in COCO captions format"},
        "images": images,
        "annotations": annotations,
    }
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(data), encoding="utf-8")
    return root


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
