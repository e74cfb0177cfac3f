"""Dataset format readers on small layouts built from real images shipped in packages."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

from ml.data.collections import available_collections
from ml.data.formats import DatasetFetchError, Record, read_dataset
from ml.data.formats.chexpert import FINDINGS
from ml.data.formats.medmnist import fetch_medmnist
from ml.data.formats.patients import own_patient_id
from ml.data.formats.rsna import SUBTYPES

CXR = available_collections()["paediatric-cxr"]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# ---------------------------------------------------------------- CheXpert


def _chexpert(tmp_path: Path, n: int = 4) -> Path:
    """n patients with one frontal view each in train, plus one valid row; row 2 of train
    (patient00002) has -1 for Cardiomegaly and a blank Edema; train also names a missing file."""
    base = tmp_path / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
    rows = []
    for k in range(1, n + 2):
        split = "train" if k <= n else "valid"
        rel = f"{split}/patient{k:05d}/study1/view1_frontal.jpg"
        (base / rel).parent.mkdir(parents=True)
        shutil.copy(CXR.files[k - 1], base / rel)
        labels: list[object] = ["1.0" if j == 0 else "0.0" for j in range(len(FINDINGS))]
        if k == 2:
            labels = ["", "", "-1.0", *[""] * (len(FINDINGS) - 3)]
            labels[FINDINGS.index("Pneumonia")] = "1.0"
        rows.append([f"CheXpert-v1.0-small/{rel}", "Female", 40, "Frontal", "AP", *labels])
    train = [r for r in rows if "/train/" in str(r[0])]
    missing = ["CheXpert-v1.0-small/train/patient09999/study1/view1_frontal.jpg"]
    _write_csv(base / "train.csv", header, [*train, [*missing, "Male", 1, "Frontal", "AP"]])
    _write_csv(base / "valid.csv", header, [r for r in rows if "/valid/" in str(r[0])])
    return base


@pytest.mark.parametrize(
    ("policy", "expected"), [("u-ones", 1.0), ("u-zeros", 0.0), ("ignore", None)]
)
def test_chexpert_uncertainty_policies(tmp_path: Path, policy: str, expected: float | None) -> None:
    base = _chexpert(tmp_path)
    report = read_dataset(base, "chexpert", policy=policy)
    assert len(report.records) == 5
    assert report.label_names == list(FINDINGS)
    by_patient = {r.patient_id: r for r in report.records}
    assert sorted(by_patient) == [f"patient{k:05d}" for k in range(1, 6)]
    second = by_patient["patient00002"]
    assert second.labels["Cardiomegaly"] == expected
    # Blank means "not mentioned" in CheXpert: negative, whatever the policy.
    assert second.labels["Edema"] == 0.0
    assert second.labels["No Finding"] == 0.0
    assert second.labels["Pneumonia"] == 1.0
    assert by_patient["patient00001"].labels["No Finding"] == 1.0
    assert second.study_key == "patient00002/study1"
    assert second.path == base / "train/patient00002/study1/view1_frontal.jpg"
    assert second.array_index is None


def test_chexpert_missing_file_names_csv_row(tmp_path: Path) -> None:
    base = _chexpert(tmp_path)
    # Pointing at the parent folder works as well: the CSVs are found inside the archive folder.
    report = read_dataset(tmp_path, "chexpert")
    assert len(report.records) == 5
    assert report.errors == [
        "train.csv line 6: file not found: "
        "CheXpert-v1.0-small/train/patient09999/study1/view1_frontal.jpg"
    ]
    assert base.is_dir()


def test_chexpert_missing_columns_is_one_error(tmp_path: Path) -> None:
    _write_csv(tmp_path / "train.csv", ["Path", "Cardiomegaly"], [["x/patient00001/a.jpg", 1]])
    report = read_dataset(tmp_path, "chexpert")
    assert report.records == []
    assert len(report.errors) == 1
    assert report.errors[0].startswith("train.csv: missing column(s) No Finding, Enlarged")
    assert "Support Devices" in report.errors[0]


def test_chexpert_rejects_bad_values_and_escaping_paths(tmp_path: Path) -> None:
    base = _chexpert(tmp_path, n=1)
    header = ["Path", *FINDINGS]
    _write_csv(
        base / "train.csv",
        header,
        [
            ["train/patient00001/study1/view1_frontal.jpg", "2", *[""] * 13],
            ["../../etc/patient00001/passwd", *[""] * 14],
            ["train/nobody/study1/view1_frontal.jpg", *[""] * 14],
        ],
    )
    report = read_dataset(base, "chexpert", csvs=("train.csv",))
    assert report.records == []
    assert report.errors[0] == "train.csv line 2: No Finding is '2'; expected 1, 0, -1 or blank"
    assert "leaves the dataset folder" in report.errors[1]
    assert "no patientNNNNN folder" in report.errors[2]
    with pytest.raises(ValueError, match="uncertainty policy"):
        read_dataset(base, "chexpert", policy="u-maybe")


# ---------------------------------------------------------------- DICOM helpers


def _dicom_copy(dest: Path, source: str, patient: str, study: str) -> Path:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(source, download=False))
    ds.PatientID = patient
    ds.StudyInstanceUID = study
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


# ---------------------------------------------------------------- RSNA


def _rsna(tmp_path: Path) -> Path:
    images = tmp_path / "stage_2_train"
    studies = {"P1": generate_uid(), "P2": generate_uid()}
    plan = [("ID_aa01", "CT_small.dcm", "P1"), ("ID_aa02", "CT_small.dcm", "P1")]
    plan += [("ID_bb01", "MR_small.dcm", "P2"), ("ID_stray", "MR_small.dcm", "P2")]
    for image_id, source, patient in plan:
        _dicom_copy(images / f"{image_id}.dcm", source, patient, studies[patient])
    rows: list[list[object]] = []
    for image_id in ("ID_aa01", "ID_aa02", "ID_bb01", "ID_gone"):
        for subtype in SUBTYPES:
            positive = image_id == "ID_bb01" and subtype in ("subdural", "any")
            rows.append([f"{image_id}_{subtype}", int(positive)])
    rows.insert(3, ["ID_aa01-epidural", 0])  # malformed: line 5 of the file
    rows.append(["ID_aa01_epidural", 0])  # an identical repeat, as in the official CSV
    _write_csv(tmp_path / "stage_2_train.csv", ["ID", "Label"], rows)
    _write_csv(tmp_path / "stage_2_sample_submission.csv", ["ID", "Label"], [])
    return tmp_path


def test_rsna_pivots_rows_and_reads_patient_from_header(tmp_path: Path) -> None:
    report = read_dataset(_rsna(tmp_path), "rsna")
    assert report.label_names == list(SUBTYPES)
    by_file = {r.path.name: r for r in report.records if r.path is not None}
    assert sorted(by_file) == ["ID_aa01.dcm", "ID_aa02.dcm", "ID_bb01.dcm"]
    assert [by_file[n].patient_id for n in sorted(by_file)] == ["P1", "P1", "P2"]
    assert by_file["ID_aa01.dcm"].study_key == by_file["ID_aa02.dcm"].study_key
    assert by_file["ID_bb01.dcm"].labels == {
        "epidural": 0.0,
        "intraparenchymal": 0.0,
        "intraventricular": 0.0,
        "subarachnoid": 0.0,
        "subdural": 1.0,
        "any": 1.0,
    }
    assert set(by_file["ID_aa01.dcm"].labels.values()) == {0.0}


def test_rsna_reports_malformed_missing_and_unlisted(tmp_path: Path) -> None:
    report = read_dataset(_rsna(tmp_path), "rsna")
    assert len(report.errors) == 3
    assert report.errors[0].startswith("stage_2_train.csv line 5: malformed ID 'ID_aa01-epidural'")
    assert report.errors[1] == (
        "stage_2_train.csv line 21: ID_gone is in the CSV but ID_gone.dcm is missing"
    )
    assert report.errors[2] == "ID_stray.dcm: not in stage_2_train.csv; skipped"


def test_rsna_header_problems_are_per_file_and_a_missing_patient_id_is_kept(
    tmp_path: Path,
) -> None:
    root = _rsna(tmp_path)
    (root / "stage_2_train" / "ID_aa02.dcm").write_bytes(b"not a dicom at all")
    _drop_patient_id(root / "stage_2_train" / "ID_bb01.dcm")
    report = read_dataset(root, "rsna")
    by_file = {r.path.name: r for r in report.records if r.path}
    assert sorted(by_file) == ["ID_aa01.dcm", "ID_bb01.dcm"]
    # ID_aa02's first row is line 9 (line 5 is the malformed row).
    assert any(
        e.startswith("stage_2_train.csv line 9: ID_aa02.dcm: not a readable DICOM file")
        for e in report.errors
    )
    assert not any("PatientID" in e for e in report.errors)
    alone = by_file["ID_bb01.dcm"]
    assert alone.own_patient and alone.where == "stage_2_train.csv line 15"
    assert alone.patient_id == own_patient_id("ID_bb01")
    assert by_file["ID_aa01.dcm"].patient_id == "P1" and not by_file["ID_aa01.dcm"].own_patient


def _drop_patient_id(path: Path, *, empty: bool = False) -> None:
    """Delete the PatientID element, or leave it present but empty (type 2)."""
    ds = pydicom.dcmread(path)
    if empty:
        ds.PatientID = ""
    else:
        del ds.PatientID
    ds.save_as(path)


def _with_patient_column(csv_path: Path, patient_of_row: dict[str, str]) -> None:
    """Append a patient_id column, filled from `patient_of_row` by the row's first cell."""
    with csv_path.open(newline="") as fh:
        header, *rows = list(csv.reader(fh))
    _write_csv(
        csv_path, [*header, "patient_id"], [[*r, patient_of_row.get(r[0], "")] for r in rows]
    )


def test_rsna_csv_patient_column_wins_and_must_agree_across_rows(tmp_path: Path) -> None:
    root = _rsna(tmp_path)
    _drop_patient_id(root / "stage_2_train" / "ID_bb01.dcm", empty=True)
    patients = {f"ID_bb01_{s}": "CSV-P9" for s in SUBTYPES}
    patients["ID_aa02_epidural"] = "CSV-X"  # one image, two patients: cannot be split safely
    patients["ID_aa02_subdural"] = "CSV-Y"
    _with_patient_column(root / "stage_2_train.csv", patients)
    report = read_dataset(root, "rsna")
    by_file = {r.path.name: r for r in report.records if r.path}
    assert sorted(by_file) == ["ID_aa01.dcm", "ID_bb01.dcm"]
    assert (by_file["ID_bb01.dcm"].patient_id, by_file["ID_bb01.dcm"].own_patient) == (
        "CSV-P9",
        False,
    )
    assert by_file["ID_aa01.dcm"].patient_id == "P1"  # blank cells: the header's PatientID
    assert "stage_2_train.csv line 9: ID_aa02 has rows naming different patient_id" in (
        report.errors
    )
    assert not any("CSV-X" in e or "CSV-Y" in e for e in report.errors)


# ---------------------------------------------------------------- DICOM + CSV


def test_dicom_csv_finds_files_in_subfolders(tmp_path: Path) -> None:
    _dicom_copy(tmp_path / "dicom" / "a" / "img1.dcm", "CT_small.dcm", "PA", generate_uid())
    _dicom_copy(tmp_path / "dicom" / "b" / "img2.dcm", "MR_small.dcm", "PB", generate_uid())
    _dicom_copy(tmp_path / "dicom" / "img3.dcm", "MR_small.dcm", "PC", generate_uid())
    rows = [["img1", 1], ["img2.dcm", 0], ["img3", ""], ["img4", 1], ["img1", 0]]
    _write_csv(tmp_path / "labels.csv", ["image_id", "label"], rows)
    report = read_dataset(tmp_path, "dicom_csv")
    assert report.label_names == ["label"]
    got = [(r.path.name, r.patient_id, r.labels["label"]) for r in report.records if r.path]
    assert got == [("img1.dcm", "PA", 1.0), ("img2.dcm", "PB", 0.0), ("img3.dcm", "PC", None)]
    assert report.errors == [
        "labels.csv line 5: file not found: img4.dcm",
        "labels.csv line 6: img1 is listed twice; kept the first",
    ]


def _dicom_csv_without_patients(tmp_path: Path, csv_patients: list[str] | None) -> Path:
    """img1 (header PA), img2 (PatientID empty), img3 (PatientID deleted), img4 (header PB);
    with `csv_patients`, a patient_id column holding those values in that order."""
    for name, patient in (("img1", "PA"), ("img2", "X"), ("img3", "X"), ("img4", "PB")):
        _dicom_copy(tmp_path / "dicom" / f"{name}.dcm", "MR_small.dcm", patient, generate_uid())
    _drop_patient_id(tmp_path / "dicom" / "img2.dcm", empty=True)
    _drop_patient_id(tmp_path / "dicom" / "img3.dcm")
    rows: list[list[object]] = [[f"img{i}", i % 2] for i in range(1, 5)]
    header = ["image_id", "label"]
    if csv_patients is not None:
        header.append("patient_id")
        rows = [[*row, patient] for row, patient in zip(rows, csv_patients, strict=True)]
    _write_csv(tmp_path / "labels.csv", header, rows)
    return tmp_path


def test_dicom_csv_keeps_images_without_patient_id_as_their_own_patients(tmp_path: Path) -> None:
    report = read_dataset(_dicom_csv_without_patients(tmp_path, None), "dicom-csv")
    assert report.errors == []
    by_name = {r.path.name: r for r in report.records if r.path}
    assert [by_name[f"img{i}.dcm"].own_patient for i in range(1, 5)] == [False, True, True, False]
    assert by_name["img1.dcm"].patient_id == "PA" and by_name["img4.dcm"].patient_id == "PB"
    own = {by_name["img2.dcm"].patient_id, by_name["img3.dcm"].patient_id}
    assert own == {own_patient_id("img2"), own_patient_id("img3")}  # two distinct patients
    assert [by_name[f"img{i}.dcm"].where for i in range(1, 5)] == [
        f"labels.csv line {i + 1}" for i in range(1, 5)
    ]


def test_dicom_csv_patient_column_wins_over_the_header(tmp_path: Path) -> None:
    root = _dicom_csv_without_patients(tmp_path, ["CSV-1", "CSV-2", "", ""])
    report = read_dataset(root, "dicom-csv")
    assert report.errors == []
    got = {r.path.name: (r.patient_id, r.own_patient) for r in report.records if r.path}
    assert got == {
        "img1.dcm": ("CSV-1", False),  # the CSV wins over the header's PA
        "img2.dcm": ("CSV-2", False),  # the CSV fills an empty PatientID
        "img3.dcm": (own_patient_id("img3"), True),  # blank cell, no PatientID: alone
        "img4.dcm": ("PB", False),  # blank cell: the header's PatientID
    }


def test_dicom_csv_missing_columns(tmp_path: Path) -> None:
    _write_csv(tmp_path / "labels.csv", ["image", "class"], [["img1", 1]])
    report = read_dataset(tmp_path, "dicom-csv")
    assert report.records == []
    assert report.errors == [
        "labels.csv: missing column(s) image_id, label; columns found: image, class"
    ]


# ---------------------------------------------------------------- folder per class


def _folder(tmp_path: Path) -> Path:
    for file, label in zip(CXR.files, CXR.labels, strict=True):
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(file, tmp_path / label / file.name)
    _dicom_copy(tmp_path / "normal" / "ct.dcm", "CT_small.dcm", "X", generate_uid())
    (tmp_path / "normal" / "notes.txt").write_text("these are chest x-rays\n")
    (tmp_path / "pneumonia" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return tmp_path


def test_folder_per_class_sniffs_and_reports_non_images(tmp_path: Path) -> None:
    report = read_dataset(_folder(tmp_path), "folder")
    assert report.label_names == ["normal", "pneumonia"]
    assert len(report.records) == 17
    assert report.errors == ["normal/notes.txt: not a PNG, JPEG or DICOM image; skipped"]
    ct = next(r for r in report.records if r.path and r.path.name == "ct.dcm")
    assert ct.labels == {"normal": 1.0, "pneumonia": 0.0}
    assert ct.patient_id == "ct"
    assert ct.study_key == "normal/ct.dcm"
    assert sum(r.labels["pneumonia"] == 1.0 for r in report.records) == 8


def test_folder_patients_csv(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "normal" / "notes.txt").unlink()
    names = [p.relative_to(root).as_posix() for p in sorted(root.glob("*/*")) if p.is_file()]
    names = [n for n in names if not n.endswith((".DS_Store", "ct.dcm"))]
    rows = [[n, f"pat{i // 2}"] for i, n in enumerate(names[1:])]
    rows.append(["ct.dcm", "pat-ct"])  # bare names match too
    rows.append(["normal/gone.png", "pat-x"])
    _write_csv(root / "patients.csv", ["file", "patient_id"], rows)
    report = read_dataset(root, "folder")
    assert len(report.records) == 16
    assert {r.patient_id for r in report.records} >= {"pat0", "pat1", "pat-ct"}
    assert report.errors == [
        f"{names[0]}: not listed in patients.csv; skipped",
        "patients.csv: normal/gone.png does not match an image",
    ]


# ---------------------------------------------------------------- MedMNIST


def _npz(path: Path, *, multi_label: bool = False, drop: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        if multi_label:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 4), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return path


def test_medmnist_multiclass_one_hot(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "pathmnist.npz")
    report = read_dataset(npz, "medmnist")
    assert report.errors == []
    assert report.label_names == ["class_0", "class_1", "class_2"]
    assert len(report.records) == 11
    rec = report.records[7]
    assert rec == Record(
        npz, 1, "medmnist-val-1", {"class_0": 0.0, "class_1": 1.0, "class_2": 0.0}, "val/1"
    )
    assert read_dataset(npz, "medmnist", n_classes=5).label_names[-1] == "class_4"


def test_medmnist_multi_label(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "chestmnist.npz", multi_label=True)
    report = read_dataset(tmp_path, "medmnist")  # the folder holding one npz works too
    assert report.label_names == ["class_0", "class_1", "class_2", "class_3"]
    with np.load(npz) as data:
        expected = data["test_labels"][2].astype(float).tolist()
    last = report.records[-1]
    assert last.study_key == "test/2"
    assert [last.labels[n] for n in report.label_names] == expected


def test_medmnist_missing_key(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "broken.npz", drop="val_labels")
    report = read_dataset(npz, "medmnist")
    assert len(report.errors) == 1
    assert "missing key(s) val_labels" in report.errors[0]
    assert {r.study_key.split("/")[0] for r in report.records} == {"train", "test"}
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    report = read_dataset(tmp_path / "other.npz", "medmnist")
    assert report.records == []
    assert "missing key(s) train_images, train_labels" in report.errors[0]


def test_fetch_medmnist_offline(tmp_path: Path) -> None:
    with pytest.raises(DatasetFetchError, match=r"No internet connection: .*medmnist:pathmnist"):
        fetch_medmnist("pathmnist", tmp_path, base_url="http://127.0.0.1:9/", timeout=2)
    assert list(tmp_path.iterdir()) == []
    existing = _npz(tmp_path / "pathmnist.npz")
    assert fetch_medmnist("pathmnist", tmp_path, base_url="http://127.0.0.1:9/") == existing
    with pytest.raises(ValueError, match="invalid MedMNIST name"):
        fetch_medmnist("../etc", tmp_path)


# ---------------------------------------------------------------- dispatch


def test_read_dataset_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset format"):
        read_dataset(tmp_path, "nifti")
    report = read_dataset(tmp_path / "nope", "folder")
    assert report.errors == [f"{tmp_path / 'nope'}: no such file or directory"]
