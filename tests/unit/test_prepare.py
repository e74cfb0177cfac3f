"""The import pipeline on small layouts built from real images shipped in packages."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

from ml.data.collections import available_collections
from ml.data.decoded import patient_key
from ml.data.errors import ImageDecodeError
from ml.data.formats.chexpert import FINDINGS
from ml.data.images import load_image
from ml.data.prepare import prepare_dataset
from ml.data.store import open_dataset
from ml.progress import Stopped

CXR = available_collections()["paediatric-cxr"]
SALT = "test-salt"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _folder(root: Path) -> Path:
    """16 chest X-rays in normal/ and pneumonia/, two images per patient (PID-000k), plus a
    truncated DICOM, a DICOM without pixel data and a fake.png that only starts like a PNG."""
    rows = []
    for i, (file, label) in enumerate(zip(CXR.files, CXR.labels, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, root / label / file.name)
        rows.append([f"{label}/{file.name}", f"PID-{i // 2:04d}"])
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    (root / "normal" / "truncated.dcm").write_bytes(ct.read_bytes()[:2000])
    ds = pydicom.dcmread(ct)
    del ds.PixelData
    ds.save_as(root / "normal" / "nopixels.dcm")
    (root / "pneumonia" / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    rows += [
        ["normal/truncated.dcm", "PID-bad1"],
        ["normal/nopixels.dcm", "PID-bad2"],
        ["pneumonia/fake.png", "PID-bad3"],
    ]
    _write_csv(root / "patients.csv", ["file", "patient_id"], rows)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("folder") / "data")


def test_folder_import_counts_errors_and_splits(folder: Path, tmp_path: Path) -> None:
    calls: list[tuple[float, float, str]] = []
    result = prepare_dataset(
        folder,
        "folder",
        tmp_path / "out",
        resolutions=(32, 64),
        salt=SALT,
        progress=lambda d, t, m: calls.append((d, t, m)),
    )
    assert result.n_read == 19
    assert result.n_failed == 3
    assert result.info.n_images == 16
    assert result.info.n_patients == 8
    assert result.info.resolutions == (32, 64)
    assert result.info.label_names == ("normal", "pneumonia")
    assert len(result.errors) == 3
    by_file = {e.split(":", 1)[0]: e for e in result.errors}
    assert set(by_file) == {"normal/truncated.dcm", "normal/nopixels.dcm", "pneumonia/fake.png"}
    for name, message in by_file.items():
        # The decoder's own reason, unchanged, after the file's path inside the dataset.
        with pytest.raises(ImageDecodeError) as caught:
            load_image(folder / name)
        assert message == f"{name}: {caught.value.reason}"
    assert "no pixel data" in by_file["normal/nopixels.dcm"]
    # 2000 bytes of CT_small.dcm end exactly between two header elements, before the image
    # module: a CT image that stops there was cut off.
    assert "DICOM file is truncated" in by_file["normal/truncated.dcm"]
    assert "CT Image Storage" in by_file["normal/truncated.dcm"]
    assert "PNG file is truncated" in by_file["pneumonia/fake.png"]
    # Progress: one call per image, ending at total.
    assert len(calls) == 19
    assert calls[-1][:2] == (19, 19)
    assert [c[0] for c in calls] == list(range(1, 20))

    ds = open_dataset(tmp_path / "out")
    assert ds.verify()
    assert ds.images(32).shape == (16, 32, 32)
    assert ds.images(64).shape == (16, 64, 64)
    assert ds.images(64).max() > 0
    split_of: dict[str, set[str]] = {}
    for entry in ds.entries:
        split_of.setdefault(entry.patient_key, set()).add(entry.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {e.split for e in ds.entries} == {"train", "val", "test"}
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert "PID-" not in text
    for file in CXR.files:  # neither file names nor stems (the default patient id) leak
        assert file.stem not in text
    assert sum(e.labels["pneumonia"] == 1 for e in ds.entries) == 8


def test_content_hash_is_reproducible_and_salted(folder: Path, tmp_path: Path) -> None:
    first = prepare_dataset(folder, "folder", tmp_path / "a", salt=SALT, resolutions=(16,))
    again = prepare_dataset(folder, "folder", tmp_path / "b", salt=SALT, resolutions=(16,))
    other = prepare_dataset(folder, "folder", tmp_path / "c", salt="other", resolutions=(16,))
    assert first.info.content_hash == again.info.content_hash
    assert first.info.content_hash != other.info.content_hash
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (
        tmp_path / "b" / "manifest.json"
    ).read_bytes()


def test_should_stop_raises_stopped(folder: Path, tmp_path: Path) -> None:
    seen: list[float] = []
    with pytest.raises(Stopped):
        prepare_dataset(
            folder,
            "folder",
            tmp_path / "out",
            salt=SALT,
            progress=lambda d, t, m: seen.append(d),
            should_stop=lambda: len(seen) >= 3,
        )
    assert seen == [1, 2, 3]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_all_failed_raises_with_errors(tmp_path: Path) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    (tmp_path / "src" / "a" / "cut.dcm").write_bytes(ct.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"nothing imported, all 1 image\(s\) failed: a/cut.dcm"):
        prepare_dataset(tmp_path / "src", "folder", tmp_path / "out", salt=SALT)
    with pytest.raises(ValueError, match=r"no images found.*no class folders"):
        prepare_dataset(tmp_path / "src" / "a", "folder", tmp_path / "out2", salt=SALT)


def test_window_preset_and_bad_arguments(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for cls, patient in (("ct", "P1"), ("ct2", "P2"), ("ct3", "P3")):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
        ds.PatientID = patient
        ds.SOPInstanceUID = generate_uid()
        (src / cls).mkdir(parents=True)
        ds.save_as(src / cls / f"{patient}.dcm")
    soft = prepare_dataset(src, "folder", tmp_path / "a", salt=SALT, window="soft_tissue")
    bone = prepare_dataset(src, "folder", tmp_path / "b", salt=SALT, window=(600.0, 2800.0))
    assert soft.info.n_images == bone.info.n_images == 3
    a, b = open_dataset(tmp_path / "a").images(64), open_dataset(tmp_path / "b").images(64)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown window preset"):
        prepare_dataset(src, "folder", tmp_path / "c", salt=SALT, window="liver")
    with pytest.raises(ValueError, match="salt"):
        prepare_dataset(src, "folder", tmp_path / "c", salt="")


def _ct_folder(src: Path) -> Path:
    for cls, patient in (("ct", "P1"), ("ct2", "P2"), ("ct3", "P3")):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
        ds.PatientID = patient
        ds.SOPInstanceUID = generate_uid()
        (src / cls).mkdir(parents=True)
        ds.save_as(src / cls / f"{patient}.dcm")
    return src


def test_window_stack_is_three_single_windows(tmp_path: Path) -> None:
    src = _ct_folder(tmp_path / "src")
    stacked = prepare_dataset(src, "folder", tmp_path / "s", salt=SALT, window="stack")
    assert stacked.errors == [] and stacked.info.channels == 3
    store = open_dataset(tmp_path / "s")
    assert store.channels == 3 and store.manifest["channels"] == 3
    assert store.images(64).shape == (3, 3, 64, 64)
    for channel, preset in enumerate(("brain", "subdural", "bone")):
        prepare_dataset(src, "folder", tmp_path / preset, salt=SALT, window=preset)
        single = open_dataset(tmp_path / preset)
        assert single.channels == 1 and "channels" not in single.manifest
        assert [e.key for e in single.entries] == [e.key for e in store.entries]
        np.testing.assert_array_equal(store.images(64)[:, channel], single.images(64))
    # The windows differ, so the channels do too.
    assert not np.array_equal(store.images(64)[:, 0], store.images(64)[:, 2])


def test_window_stack_reports_non_dicom_files(tmp_path: Path) -> None:
    src = _ct_folder(tmp_path / "src")
    shutil.copy(CXR.files[0], src / "ct" / "xray.png")
    result = prepare_dataset(src, "folder", tmp_path / "s", salt=SALT, window="stack")
    assert result.info.n_images == 3 and result.n_failed == 1
    assert result.errors == ["ct/xray.png: not a CT DICOM; a window stack needs Hounsfield units"]


def test_chexpert_layout(tmp_path: Path) -> None:
    base = tmp_path / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
    rows = []
    for k in range(1, 7):
        rel = f"train/patient{k:05d}/study1/view1_frontal.jpg"
        (base / rel).parent.mkdir(parents=True)
        shutil.copy(CXR.files[k - 1], base / rel)
        labels = ["1.0" if j == k % 3 else "0.0" for j in range(len(FINDINGS))]
        labels[FINDINGS.index("Edema")] = "-1.0" if k == 2 else ""
        rows.append([f"CheXpert-v1.0-small/{rel}", "Female", 40, "Frontal", "AP", *labels])
    _write_csv(base / "train.csv", header, rows)
    _write_csv(base / "valid.csv", header, [])
    result = prepare_dataset(
        base,
        "chexpert",
        tmp_path / "out",
        salt=SALT,
        format_options={"policy": "ignore"},
        split_fractions={"train": 0.5, "val": 0.0, "test": 0.5},
    )
    assert result.errors == []
    assert (result.info.n_images, result.info.n_patients) == (6, 6)
    assert set(result.info.splits) == {"train", "test"}
    ds = open_dataset(tmp_path / "out")
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert "patient0" not in text
    assert "Edema" not in ds.entries[1].labels  # -1 under "ignore": unknown, left out
    assert ds.label_tuple(ds.entries[1])[FINDINGS.index("Edema")] is None


def test_medmnist_keeps_official_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    np.savez(tmp_path / "pathmnist.npz", **arrays)
    result = prepare_dataset(
        tmp_path / "pathmnist.npz", "medmnist", tmp_path / "out", resolutions=(28,), salt=SALT
    )
    assert result.info.splits == {"test": 3, "train": 6, "val": 2}
    ds = open_dataset(tmp_path / "out")
    entry = ds.entries[7]
    assert (entry.key, entry.split) == ("val/1", "val")
    assert entry.labels == {"class_0": 0, "class_1": 1, "class_2": 0}
    # 28 -> 28 is an identity resize: the stored codes are the original bytes.
    np.testing.assert_array_equal(ds.images(28)[7], arrays["val_images"][1])
    assert entry.source_sha256 == hashlib.sha256(arrays["val_images"][1].tobytes()).hexdigest()
    assert "medmnist-" not in (tmp_path / "out" / "manifest.json").read_text()


def test_report_lines_mask_patient_ids_but_not_file_stems() -> None:
    from ml.data.formats import Record
    from ml.data.prepare import mask_patient_ids

    records = [
        Record(Path("train/patient00002/study1/view1.jpg"), None, "patient00002", {}, "s1"),
        Record(Path("normal/IM-0001.jpeg"), None, "IM-0001", {}, "s2"),  # stem: a file name
    ]
    lines = [
        "train/patient00002/study1/view1.jpg: JPEG file is truncated",
        "normal/IM-0001.jpeg: not a PNG, JPEG or DICOM image; skipped",
    ]
    masked = mask_patient_ids(lines, records, "salt")
    assert "patient00002" not in masked[0] and masked[0].startswith("train/patient-")
    assert masked[0].endswith("/study1/view1.jpg: JPEG file is truncated")
    assert masked[1] == lines[1]
    assert mask_patient_ids(lines, records, "salt") == masked  # stable for one salt


# ---------------------------------------------------------------- patients from DICOM headers


def _dicom_csv(root: Path, csv_patients: list[str] | None = None) -> Path:
    """dicom-csv: P1..P3 with PatientIDs, `empty` (PatientID "") and `gone` (no PatientID),
    `cut` (truncated, line 7 of labels.csv) and `lost` (no such file, line 8)."""
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    (root / "dicom").mkdir(parents=True)
    plan = [("a", "P1"), ("b", "P2"), ("c", "P3"), ("empty", ""), ("gone", None)]
    for name, patient in plan:
        ds = pydicom.dcmread(ct)
        if patient is None:
            del ds.PatientID
        else:
            ds.PatientID = patient
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(root / "dicom" / f"{name}.dcm")
    (root / "dicom" / "cut.dcm").write_bytes(ct.read_bytes()[:20000])
    names = [name for name, _ in plan] + ["cut", "lost"]
    rows: list[list[object]] = [[name, i % 2] for i, name in enumerate(names)]
    header = ["image_id", "label"]
    if csv_patients is not None:
        header.append("patient_id")
        rows = [[*row, patient] for row, patient in zip(rows, csv_patients, strict=True)]
    _write_csv(root / "labels.csv", header, rows)
    return root


def _keys_by_name(out: Path, src: Path) -> dict[str, str]:
    by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p.stem for p in src.glob("dicom/*")}
    return {by_sha[e.source_sha256]: e.patient_key for e in open_dataset(out).entries}


def test_images_without_patient_id_are_kept_counted_and_progress_matches_report(
    tmp_path: Path,
) -> None:
    src = _dicom_csv(tmp_path / "src")
    messages: list[str] = []
    result = prepare_dataset(
        src,
        "dicom-csv",
        tmp_path / "out",
        resolutions=(16,),
        salt=SALT,
        progress=lambda done, total, message: messages.append(message),
    )
    assert (result.info.n_images, result.n_read, result.n_failed) == (5, 6, 1)
    assert result.n_own_patients == 2
    assert result.notes == (
        "2 images had no PatientID and were treated as separate patients; "
        "a patient_id column in the CSV would group them by patient",
    )
    assert result.errors[0] == "labels.csv line 8: file not found: lost.dcm"
    assert result.errors[1].startswith("labels.csv line 7: dicom/cut.dcm: ")
    assert len(result.errors) == 2
    # The missing file counts from the first message on; the last one is the summary.
    assert messages[0] == "1/6 images read, 1 imported, 1 problem(s)"
    assert messages[-1] == result.summary == "6/6 images read, 5 imported, 2 problem(s)"

    keys = _keys_by_name(tmp_path / "out", src)
    assert keys["a"] == patient_key("P1", SALT)
    assert len(set(keys.values())) == 5  # `empty` and `gone` are two patients, not one


def test_csv_patient_column_groups_images_without_patient_id(tmp_path: Path) -> None:
    src = _dicom_csv(tmp_path / "src", ["", "CSV-B", "", "CSV-Q", "CSV-Q", "", ""])
    result = prepare_dataset(src, "dicom-csv", tmp_path / "out", resolutions=(16,), salt=SALT)
    assert result.n_own_patients == 0 and result.notes == ()
    keys = _keys_by_name(tmp_path / "out", src)
    assert keys["a"] == patient_key("P1", SALT)  # blank cell: the header
    assert keys["b"] == patient_key("CSV-B", SALT)  # the CSV wins over the header's P2
    assert keys["empty"] == keys["gone"] == patient_key("CSV-Q", SALT)
    entries = open_dataset(tmp_path / "out").entries
    assert len({e.patient_key for e in entries}) == 4
    assert len({e.split for e in entries if e.patient_key == keys["empty"]}) == 1  # one patient
