"""bench/scale_fixture.py writes the public CheXpert and RSNA ICH layouts, every file different,
and the importer reads them back without a complaint."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from scale_fixtures import scale_fixture, write_chexpert_tree, write_rsna_tree

from ml.data.formats import read_dataset
from ml.data.formats.chexpert import FINDINGS
from ml.data.formats.rsna import SUBTYPES

N = 24


def _digests(files: list[Path]) -> set[str]:
    return {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_chexpert_tree_has_the_release_layout_and_reads_back(tmp_path: Path) -> None:
    tree = write_chexpert_tree(tmp_path, N, seed=3)
    base = tmp_path / "CheXpert-v1.0-small"
    with (base / "train.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
    assert len(rows) == N + 1
    for row in rows[1:]:
        parts = row[0].split("/")
        assert parts[:2] == ["CheXpert-v1.0-small", "train"] and parts[2].startswith("patient")
        assert parts[3] in ("study1", "study2") and parts[4] in (
            "view1_frontal.jpg",
            "view2_lateral.jpg",
        )
        assert row[3] == ("Lateral" if "lateral" in parts[4] else "Frontal")
        assert set(row[5:]) <= {"1.0", "0.0", "-1.0", ""}
    cells = Counter(v for row in rows[1:] for v in row[5:])
    assert all(cells[v] > 0 for v in ("1.0", "0.0", "-1.0", ""))

    report = read_dataset(tree.root, "chexpert")
    assert report.errors == []
    assert len(report.records) == N
    assert len({r.patient_id for r in report.records}) == tree.n_patients
    files = [r.path for r in report.records if r.path is not None]
    assert len(_digests(files)) == N  # every film differs
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.mode == "L" and max(im.size) <= 320


def test_rsna_tree_has_the_challenge_layout_and_reads_back(tmp_path: Path) -> None:
    tree = write_rsna_tree(tmp_path, N, seed=3)
    with (tmp_path / "stage_2_train.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ID", "Label"]
    assert len(rows) == 6 * N + 1
    assert [r[0].rsplit("_", 1)[1] for r in rows[1:7]] == list(SUBTYPES)
    files = sorted((tmp_path / "stage_2_train").glob("ID_*.dcm"))
    assert len(files) == N and len(_digests(files)) == N

    report = read_dataset(tree.root, "rsna")
    assert report.errors == []
    assert len(report.records) == N
    patients = Counter(r.patient_id for r in report.records)
    assert len(patients) == tree.n_patients == -(-N // scale_fixture.SLICES_PER_PATIENT)
    for record in report.records:
        labels = record.labels
        assert labels["any"] == max(labels[s] for s in SUBTYPES[:-1])
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.PatientID.startswith("ID_")
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a = write_chexpert_tree(tmp_path / "a", 6, seed=1).root
    b = write_chexpert_tree(tmp_path / "b", 6, seed=1).root
    c = write_chexpert_tree(tmp_path / "c", 6, seed=2).root
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".jpg")


def test_vary_keeps_the_range_and_changes_the_image() -> None:
    pixels = np.arange(64 * 48, dtype=np.int32).reshape(64, 48) % 200 + 20
    out = [scale_fixture.vary(pixels, np.random.default_rng(i), 20, 219) for i in range(4)]
    for image in out:
        assert image.min() >= 20 and image.max() <= 219
        assert 0.85 * 64 - 1 <= image.shape[0] <= 64 and 0.85 * 48 - 1 <= image.shape[1] <= 48
    assert len({image.tobytes() for image in out}) == 4
