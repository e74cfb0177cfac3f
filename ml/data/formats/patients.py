"""Which patient an image belongs to, for formats that read patients from DICOM headers.

PatientID is a type 2 DICOM element: it must be present but may be empty, and de-identified
public datasets often leave it so. Refusing such images would silently shrink a dataset, so
the patient is chosen in this order:

1. the CSV's `patient_id` column (`PATIENT_COLUMN`), when the CSV has one and the row fills it:
   the researcher's own statement, which also links images a de-identification unlinked;
2. the header's PatientID;
3. otherwise the image is its own patient (`own_patient_id`), and the import report counts
   such images (`own_patients_line`): two images of one patient may then land in two splits,
   and only the researcher can judge how likely that is.
"""

from __future__ import annotations

PATIENT_COLUMN = "patient_id"

# NUL never occurs in a DICOM PatientID (an LO value) nor in a CSV cell written by a person, so
# no real patient id can equal an image's own id.
_OWN = "\0own-patient\0"


def own_patient_id(image: str) -> str:
    """The patient id of an image that has no patient of its own; `image` must be unique in the
    dataset (a CSV image id, a path)."""
    return f"{_OWN}{image}"


def choose_patient(
    csv_patient: str | None, header_patient: str | None, image: str
) -> tuple[str, bool]:
    """(raw patient id, whether the image is its own patient), in the order of the module
    docstring; blank values count as missing."""
    for candidate in (csv_patient, header_patient):
        value = (candidate or "").strip()
        if value:
            return value, False
    return own_patient_id(image), True


def own_patients_line(n_images: int) -> str | None:
    """The import report's line about images stored as their own patient (None when none)."""
    if n_images <= 0:
        return None
    if n_images == 1:
        said = "1 image had no PatientID and was treated as a separate patient"
    else:
        said = f"{n_images} images had no PatientID and were treated as separate patients"
    return f"{said}; a {PATIENT_COLUMN} column in the CSV would group them by patient"
