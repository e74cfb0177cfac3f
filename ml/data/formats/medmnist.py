"""MedMNIST `.npz` files: `{train,val,test}_{images,labels}` arrays.

Records point into the npz by `array_index`; `study_key` keeps the official split and index
("train/123") so the official split can be reproduced. MedMNIST publishes no patient ids, so
each image is its own "patient" (`medmnist-<split>-<index>`): any split other than the
official one therefore cannot be guaranteed patient-disjoint.

Labels of shape (n, 1) or (n,) are class indices and become one-hot `class_<k>` columns;
labels of shape (n, k>1) are multi-label (e.g. ChestMNIST) and become `class_<j>` 0/1 columns.
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ml.data.formats import DatasetFetchError, FormatReport, Record

SPLITS = ("train", "val", "test")
KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))
# MedMNIST+ (v3) record on Zenodo; files are "<name>.npz" or "<name>_<size>.npz".
OFFICIAL_BASE_URL = "https://zenodo.org/records/10519652/files/"
_NAME = re.compile(r"^[a-z0-9]+$")


def read_medmnist(path: Path, *, n_classes: int | None = None) -> FormatReport:
    """`path` is the .npz (or a folder holding exactly one). `n_classes` overrides the class
    count inferred from the labels (max + 1), for a subset where the top class is absent."""
    report = FormatReport()
    npz = _find_npz(Path(path), report.errors)
    if npz is None:
        return report
    try:
        with zipfile.ZipFile(npz) as zf:
            present = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            missing = [k for k in KEYS if k not in present]
            if missing:
                report.errors.append(
                    f"{npz.name}: not a MedMNIST file, missing key(s) {', '.join(missing)} "
                    f"(expected {', '.join(KEYS)}); splits without both arrays are skipped"
                )
            counts = {k: _rows(zf, k) for k in KEYS if k.endswith("_images") and k in present}
        with np.load(npz, allow_pickle=False) as data:
            # Labels are small; images stay in the file (only their row count was read).
            labels = {
                s: np.asarray(data[f"{s}_labels"]) for s in SPLITS if f"{s}_labels" in present
            }
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        report.errors.append(f"{npz.name}: cannot read npz ({exc})")
        return report
    splits = [s for s in SPLITS if s in labels and f"{s}_images" in counts]
    splits = [
        s
        for s in splits
        if _consistent(npz.name, s, counts[f"{s}_images"], labels[s], report.errors)
    ]
    if not splits:
        return report
    width = {labels[s].shape[1] if labels[s].ndim == 2 else 1 for s in splits}
    if len(width) > 1:
        report.errors.append(f"{npz.name}: label arrays differ in width between splits")
        return report
    multi_label = width.pop() > 1
    if multi_label:
        k = labels[splits[0]].shape[1]
    else:
        k = n_classes or int(max(int(labels[s].max(initial=0)) for s in splits)) + 1
    report.label_names = [f"class_{j}" for j in range(k)]
    for split in splits:
        _add_split(npz, split, labels[split], k, multi_label, report)
    return report


def _add_split(
    npz: Path, split: str, labels: np.ndarray, k: int, multi_label: bool, report: FormatReport
) -> None:
    rows = labels.reshape(len(labels), -1)
    names = report.label_names
    for i, row in enumerate(rows):
        if multi_label:
            values: dict[str, float | None] = {names[j]: float(row[j]) for j in range(k)}
        else:
            cls = int(row[0])
            if not 0 <= cls < k:
                report.errors.append(f"{npz.name}: {split}/{i}: class {cls} outside 0..{k - 1}")
                continue
            values = {name: float(j == cls) for j, name in enumerate(names)}
        report.records.append(Record(npz, i, f"medmnist-{split}-{i}", values, f"{split}/{i}"))


def _find_npz(path: Path, errors: list[str]) -> Path | None:
    if path.is_file():
        return path
    found = sorted(path.glob("*.npz")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    errors.append(
        f"{path}: " + ("no .npz file found" if not found else "several .npz files; choose one")
    )
    return None


def _rows(zf: zipfile.ZipFile, key: str) -> int:
    """Row count from the .npy header alone, so listing never decompresses the images."""
    with zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return int(shape[0]) if shape else 0


def _consistent(
    name: str, split: str, n_images: int, labels: np.ndarray, errors: list[str]
) -> bool:
    if labels.ndim not in (1, 2) or len(labels) != n_images:
        errors.append(
            f"{name}: {split}_labels has shape {labels.shape} but {split}_images has "
            f"{n_images} images; split skipped"
        )
        return False
    if not np.issubdtype(labels.dtype, np.number):
        errors.append(f"{name}: {split}_labels is not numeric ({labels.dtype}); split skipped")
        return False
    return True


def fetch_medmnist(
    name: str,
    dest: str | Path,
    *,
    size: int | None = None,
    base_url: str = OFFICIAL_BASE_URL,
    timeout: float = 30.0,
) -> Path:
    """Download `<name>.npz` (or `<name>_<size>.npz`) into `dest`; return its path.

    An existing file is returned without downloading. Any network failure raises
    `DatasetFetchError` telling the user to download elsewhere and import the file.
    """
    if not _NAME.match(name):
        raise ValueError(f"invalid MedMNIST name {name!r} (e.g. 'pathmnist')")
    filename = f"{name}.npz" if size in (None, 28) else f"{name}_{size}.npz"
    target = Path(dest) / filename
    if target.is_file():
        return target
    url = f"{base_url.rstrip('/')}/{filename}?download=1"
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"base_url must be http(s): {base_url!r}")
    advice = "download it elsewhere and import the .npz with --format medmnist"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".npz.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, partial.open("wb") as out:  # noqa: S310 - scheme checked above
            shutil.copyfileobj(resp, out)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise DatasetFetchError(
            f"Could not download medmnist:{name} from {url} (HTTP {exc.code}); {advice}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DatasetFetchError(
            f"No internet connection: could not download medmnist:{name} from {url}; {advice}"
        ) from exc
    if not zipfile.is_zipfile(partial):
        partial.unlink(missing_ok=True)
        raise DatasetFetchError(f"{url} did not return an .npz file; {advice}")
    partial.replace(target)
    return target
