"""Which patient an image belongs to when DICOM headers may leave PatientID empty."""

from __future__ import annotations

from ml.data.formats.patients import (
    PATIENT_COLUMN,
    choose_patient,
    own_patient_id,
    own_patients_line,
)


def test_the_csv_patient_wins_over_the_header() -> None:
    assert choose_patient("CSV-7", "HDR-1", "img1") == ("CSV-7", False)
    assert choose_patient("  CSV-7 ", None, "img1") == ("CSV-7", False)


def test_a_blank_csv_cell_falls_back_to_the_header() -> None:
    assert choose_patient("", "HDR-1", "img1") == ("HDR-1", False)
    assert choose_patient(None, " HDR-1", "img1") == ("HDR-1", False)
    assert choose_patient("   ", "HDR-1", "img1") == ("HDR-1", False)


def test_no_patient_anywhere_makes_the_image_its_own_patient() -> None:
    one, own = choose_patient(None, "", "img1")
    other, _ = choose_patient("", "  ", "img2")
    assert own and one == own_patient_id("img1") and other == own_patient_id("img2")
    assert one != other  # two such images are two patients, never one
    # A real id that spells the image's name cannot collide with its own-patient id.
    assert choose_patient("img1", None, "img1") != (one, True)
    assert one not in {"img1", "", own_patient_id("img2")}


def test_the_report_line_counts_images_without_patient() -> None:
    assert own_patients_line(0) is None
    assert own_patients_line(1) == (
        "1 image had no PatientID and was treated as a separate patient; "
        f"a {PATIENT_COLUMN} column in the CSV would group them by patient"
    )
    line = own_patients_line(412)
    assert line is not None
    assert line.startswith("412 images had no PatientID and were treated as separate patients")
    assert PATIENT_COLUMN == "patient_id"
