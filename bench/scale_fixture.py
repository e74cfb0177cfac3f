"""Write CheXpert- and RSNA-ICH-format trees of any size from the real images shipped in packages.

The importer's throughput at CheXpert scale (224k films) cannot be measured on 16 files, and
the real archives cannot be downloaded here. This writes trees in the two public layouts, as
large as asked, whose pixels are real: every image is one of the 16 paediatric chest X-rays
(`ml.data.collections`, "paediatric-cxr") or pydicom's CT_small.dcm, changed per image by a
random crop, shift, horizontal flip, gamma and noise drawn from a generator seeded with the
image's index, so no two files are alike and the same arguments write the same bytes.

CheXpert (CheXpert-v1.0-small layout, what `ml.data.formats.chexpert` reads)::

    CheXpert-v1.0-small/train.csv     Path, Sex, Age, Frontal/Lateral, AP/PA, 14 findings
                                      (1.0 / 0.0 / -1.0 / blank)
    CheXpert-v1.0-small/train/patientNNNNN/studyN/viewN_frontal.jpg (or _lateral)

    Films are 8-bit grey JPEGs about 320 px on the long side, like the "small" release;
    patients have 1 to 3 films (study1 frontal, study1 lateral, study2 frontal).

RSNA Intracranial Hemorrhage (stage 2 layout, what `ml.data.formats.rsna` reads)::

    stage_2_train.csv                 ID,Label with rows ID_<image>_<subtype>, six per image
    stage_2_train/ID_<image>.dcm      uncompressed 16-bit CT slices, PatientID in the header

    Patients have `SLICES_PER_PATIENT` slices of one study.

    .venv/bin/python bench/scale_fixture.py /tmp/scale --images 100000
    .venv/bin/python bench/scale_fixture.py /tmp/scale --images 200 --formats rsna --workers 2
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from numpy.typing import NDArray
from PIL import Image
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml.data.collections import available_collections  # noqa: E402
from ml.data.formats.chexpert import FINDINGS  # noqa: E402
from ml.data.formats.rsna import SUBTYPES  # noqa: E402

CHEXPERT_TOP = "CheXpert-v1.0-small"
CHEXPERT_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
RSNA_CSV = "stage_2_train.csv"
RSNA_IMAGES = "stage_2_train"
SLICES_PER_PATIENT = 12
LONG_SIDE = 320  # CheXpert-v1.0-small's films are about 320 x 390
# One patient's films, in order: CheXpert's own file names.
_VIEWS = (
    ("study1", "view1_frontal", "Frontal"),
    ("study1", "view2_lateral", "Lateral"),
    ("study2", "view1_frontal", "Frontal"),
)
_FILMS_PER_PATIENT = (1, 2, 3, 2)  # cycled over patients
_CHEXPERT, _RSNA = 1, 2  # mixed into the seeds so the two trees vary independently

__all__ = ["ScaleTree", "chexpert_layout", "vary", "write_chexpert_tree", "write_rsna_tree"]


@dataclass(frozen=True)
class ScaleTree:
    root: Path  # what to import
    n_images: int
    n_patients: int


def vary(
    pixels: NDArray[np.integer], rng: np.random.Generator, lo: int, hi: int
) -> NDArray[np.float64]:
    """One image's variation of `pixels` (2-D values in lo..hi), rounded, in lo..hi: a crop
    keeping 85-100 % of each side, a shift of up to 4 % (edge pixels repeated), a flip half of
    the time, a gamma in 0.8..1.25 and Gaussian noise of up to 1.5 % of lo..hi."""
    h, w = pixels.shape
    ch, cw = (max(8, int(s * rng.uniform(0.85, 1.0))) for s in (h, w))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = (pixels[top : top + ch, left : left + cw].astype(np.float64) - lo) / (hi - lo)
    dy, dx = (int(rng.integers(-s // 25, s // 25 + 1)) for s in (ch, cw))
    out = np.pad(out, ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))), mode="edge")
    out = out[max(-dy, 0) : max(-dy, 0) + ch, max(-dx, 0) : max(-dx, 0) + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    out = out + rng.normal(0.0, rng.uniform(0.0, 0.015), out.shape)
    return np.rint(np.clip(out, 0.0, 1.0) * (hi - lo) + lo)


# ---------------------------------------------------------------- CheXpert


@cache
def _xrays() -> tuple[tuple[NDArray[np.uint8], ...], tuple[str, ...]]:
    """The 16 X-rays, grey, scaled like the small release; and their classes."""
    cxr = available_collections()["paediatric-cxr"]
    films = []
    for file in cxr.files:
        with Image.open(file) as im:
            grey = im.convert("L")
            grey.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
            films.append(np.asarray(grey, dtype=np.uint8))
    return tuple(films), cxr.labels


def chexpert_layout(n_images: int) -> list[tuple[int, int]]:
    """(patient number, view slot) of every film, in CSV order."""
    out: list[tuple[int, int]] = []
    patient = 0
    while len(out) < n_images:
        films = _FILMS_PER_PATIENT[patient % len(_FILMS_PER_PATIENT)]
        out.extend((patient + 1, slot) for slot in range(films))
        patient += 1
    return out[:n_images]


def _chexpert_row(index: int, patient: int, slot: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, _CHEXPERT, index, 1])
    films, classes = _xrays()
    source = index % len(films)
    study, view, side = _VIEWS[slot]
    rel = f"{CHEXPERT_TOP}/train/patient{patient:05d}/{study}/{view}.jpg"
    findings = {name: str(rng.choice(["", "", "", "0.0", "1.0", "-1.0"])) for name in FINDINGS}
    if classes[source] == "pneumonia":
        findings["Pneumonia"] = "1.0" if rng.random() < 0.7 else "-1.0"
    positive = any(v == "1.0" for k, v in findings.items() if k != "No Finding")
    findings["No Finding"] = "" if positive else "1.0"
    sex = "Female" if patient % 2 else "Male"
    age = str(18 + (patient * 7) % 70)
    meta = [rel, sex, age, side, "AP" if side == "Frontal" else ""]
    return meta + [findings[name] for name in FINDINGS]


def _write_chexpert_films(base: Path, seed: int, jobs: list[tuple[int, str]]) -> None:
    films, _ = _xrays()
    for index, rel in jobs:
        rng = np.random.default_rng([seed, _CHEXPERT, index])
        pixels = vary(films[index % len(films)], rng, 0, 255).astype(np.uint8)
        target = base / rel.removeprefix(f"{CHEXPERT_TOP}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        target.write_bytes(buffer.getvalue())


def write_chexpert_tree(root: Path, n_images: int, *, seed: int = 0, workers: int = 1) -> ScaleTree:
    """`n_images` films in CheXpert-v1.0-small's layout under `root`; returns what to import."""
    base = Path(root) / CHEXPERT_TOP
    base.mkdir(parents=True, exist_ok=True)
    layout = chexpert_layout(n_images)
    rows = [_chexpert_row(i, p, slot, seed) for i, (p, slot) in enumerate(layout)]
    _fan_out(
        _write_chexpert_films, base, seed, [(i, row[0]) for i, row in enumerate(rows)], workers
    )
    with (base / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*CHEXPERT_META, *FINDINGS])
        writer.writerows(rows)
    return ScaleTree(Path(root), n_images, layout[-1][0] if layout else 0)


# ---------------------------------------------------------------- RSNA


def _rsna_id(seed: int, kind: str, number: int) -> str:
    """`ID_` and 9 hex digits, like the challenge's de-identified image and patient ids."""
    rng = np.random.default_rng([seed, _RSNA, 0 if kind == "image" else 1, number])
    return f"ID_{int(rng.integers(0, 16**9)):09x}"


def _rsna_rows(index: int, seed: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng([seed, _RSNA, index, 1])
    image = _rsna_id(seed, "image", index)
    # About one slice in seven shows a haemorrhage, as in the challenge's training set.
    bleed = rng.random() < 0.15
    labels = {s: int(bleed and rng.random() < 0.4) for s in SUBTYPES[:-1]}
    if bleed and not any(labels.values()):
        labels[SUBTYPES[int(rng.integers(0, 5))]] = 1
    labels["any"] = int(any(labels.values()))
    return [(f"{image}_{subtype}", labels[subtype]) for subtype in SUBTYPES]


def _write_rsna_slices(folder: Path, seed: int, jobs: list[tuple[int, str]]) -> None:
    template = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    if "OtherPatientIDsSequence" in template:
        del template.OtherPatientIDsSequence
    source = template.pixel_array
    # The slice's own range: gamma and noise then stay within plausible Hounsfield units.
    lo, hi = int(source.min()), int(source.max())
    for index, image in jobs:
        rng = np.random.default_rng([seed, _RSNA, index])
        pixels = vary(source, rng, lo, hi).astype(source.dtype)
        patient_number = index // SLICES_PER_PATIENT
        patient = _rsna_id(seed, "patient", patient_number)
        ds = template
        ds.PatientID = patient
        ds.PatientName = patient
        entropy = [str(seed), str(patient_number)]
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy, "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(seed), image])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index % SLICES_PER_PATIENT + 1
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.save_as(folder / f"{image}.dcm")


def write_rsna_tree(root: Path, n_images: int, *, seed: int = 0, workers: int = 1) -> ScaleTree:
    """`n_images` CT slices in the RSNA ICH stage 2 layout under `root`; returns what to import."""
    root = Path(root)
    folder = root / RSNA_IMAGES
    folder.mkdir(parents=True, exist_ok=True)
    images = [_rsna_id(seed, "image", i) for i in range(n_images)]
    if len(set(images)) != n_images:
        raise RuntimeError("two images drew the same id; choose another seed")
    _fan_out(_write_rsna_slices, folder, seed, list(enumerate(images)), workers)
    with (root / RSNA_CSV).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "Label"])
        for index in range(n_images):
            writer.writerows(_rsna_rows(index, seed))
    n_patients = -(-n_images // SLICES_PER_PATIENT)
    return ScaleTree(root, n_images, n_patients)


# ---------------------------------------------------------------- shared


def _fan_out(
    write: Callable[[Path, int, list[tuple[int, str]]], None],
    folder: Path,
    seed: int,
    jobs: list[tuple[int, str]],
    workers: int,
) -> None:
    """`write(folder, seed, block)` over blocks of `jobs`, in `workers` processes."""
    if workers <= 1 or len(jobs) < 64:
        write(folder, seed, jobs)
        return
    size = max(32, len(jobs) // (workers * 8))
    blocks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(write, [folder] * len(blocks), [seed] * len(blocks), blocks):
            del done


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=100_000, help="per format")
    parser.add_argument("--formats", nargs="+", default=["chexpert", "rsna"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    writers = {"chexpert": write_chexpert_tree, "rsna": write_rsna_tree}
    for name in args.formats:
        start = time.perf_counter()
        tree = writers[name](args.out / name, args.images, seed=args.seed, workers=args.workers)
        took = time.perf_counter() - start
        mib = disk_bytes(tree.root) / 2**20
        print(
            f"{name}: {tree.n_images} images of {tree.n_patients} patients in {tree.root}, "
            f"{mib:.1f} MiB, written in {took:.1f} s"
        )


if __name__ == "__main__":
    main()
