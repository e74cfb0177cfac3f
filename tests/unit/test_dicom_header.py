"""The struct-level header reader agrees with pydicom on every file pydicom ships, and leaves
to pydicom every file it is not sure of."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.uid import ExplicitVRBigEndian

from ml.data.formats.dicom_csv import dicom_ids
from ml.data.formats.dicom_header import scan_ids

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False)).parent


def _pydicom_ids(path: Path) -> tuple[str, str | None] | str:
    """`dicom_ids` as it was before the fast reader: pydicom alone."""
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"]
        )
    except Exception as exc:  # as dicom_ids: any failure is one unreadable file
        return f"not a readable DICOM file ({type(exc).__name__}: {exc})"
    patient = str(ds.get("PatientID", "") or "").strip()
    study = str(ds.get("StudyInstanceUID", "") or "").strip()
    return patient, study or None


def test_every_file_read_fast_reads_as_pydicom_reads_it() -> None:
    files = sorted(p for p in TEST_FILES.rglob("*") if p.is_file())
    fast = {f: scan_ids(f) for f in files}
    read = [f for f, ids in fast.items() if ids is not None]
    assert len(read) >= len(files) // 2  # the common, plain files take the fast path
    mismatches = [(f.name, fast[f], _pydicom_ids(f)) for f in read if fast[f] != _pydicom_ids(f)]
    assert mismatches == []
    # dicom_ids answers the same whichever reader it used.
    assert all(dicom_ids(f) == _pydicom_ids(f) for f in files)


def _copy(tmp_path: Path, name: str, **changes: str) -> Path:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    for key, value in changes.items():
        setattr(ds, key, value)
    out = tmp_path / name
    ds.save_as(out)
    return out


def test_padding_and_empty_values_read_as_pydicom_reads_them(tmp_path: Path) -> None:
    padded = _copy(tmp_path, "padded.dcm", PatientID="  PAT 7 ")
    empty = _copy(tmp_path, "empty.dcm", PatientID="")
    for path in (padded, empty):
        assert scan_ids(path) is not None
        assert scan_ids(path) == _pydicom_ids(path)
    assert scan_ids(padded) == ("PAT 7", pydicom.dcmread(padded).StudyInstanceUID)


@pytest.mark.parametrize(
    "case", ["truncated header", "two patient ids", "not ascii", "big endian", "no preamble"]
)
def test_files_it_is_not_sure_of_go_to_pydicom(case: str, tmp_path: Path) -> None:
    source = TEST_FILES / "CT_small.dcm"
    path = tmp_path / "case.dcm"
    if case == "truncated header":
        path.write_bytes(source.read_bytes()[:2000])
    elif case == "two patient ids":
        path = _copy(tmp_path, "case.dcm", PatientID="A\\B")
    elif case == "not ascii":
        path = _copy(tmp_path, "case.dcm", PatientID="Zoë", SpecificCharacterSet="ISO_IR 100")
    elif case == "big endian":
        path = TEST_FILES / "MR_small_bigendian.dcm"
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    else:
        path.write_bytes(source.read_bytes()[128:])
    assert scan_ids(path) is None
    assert dicom_ids(path) == _pydicom_ids(path)
