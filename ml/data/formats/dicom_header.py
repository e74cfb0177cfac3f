"""PatientID and StudyInstanceUID straight from the bytes of a plain DICOM file.

Listing an RSNA-sized dataset reads the header of every slice for its patient, and pydicom's
reader, even told to keep two tags only, builds every element of the header in Python: at
CheXpert / RSNA scale that took longer than decoding the pixels. Most files are plain: a
Part 10 file, little endian, every element with a defined length. For those, this walks the
element headers with `struct` up to the pixel data and takes the two values; for anything
else it answers None and the caller asks pydicom, so unusual files are read exactly as before.

It answers None (ask pydicom) when: there is no "DICM" preamble; the transfer syntax is big
endian or deflated; an element has an undefined length (a sequence, encapsulated pixel data
is past the point it stops) or runs past the end of what it read; a VR is not two capital
letters; a value holds anything but printable ASCII or has several values. The whole header
is walked, not only up to the two tags, so a header that is broken further on goes to pydicom,
which then reports it as before.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["scan_ids"]

HEAD_BYTES = 256 * 1024  # headers are a few KB; a file whose header is longer goes to pydicom
_IMPLICIT = "1.2.840.10008.1.2"
_UNSUPPORTED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
_LONG_VRS.add(b"UV")
_PATIENT_ID = 0x00100020
_STUDY_UID = 0x0020000D
_PIXEL_DATA = 0x7FE00010
_TS_UID = 0x00020010
_UNDEFINED = 0xFFFFFFFF
_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<H")
_LONG = struct.Struct("<I")


def scan_ids(path: Path) -> tuple[str, str | None] | None:
    """(PatientID, StudyInstanceUID or None) as `dicom_csv.dicom_ids` reads them, or None when
    the file is not plain enough to read here (see the module docstring)."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(HEAD_BYTES)
            complete = not fh.read(1)
    except OSError:
        return None
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    found: dict[int, tuple[bytes, bytes]] = {}
    # The file meta group is always explicit VR little endian.
    pos = _walk(data, 132, explicit=True, found=found, meta=True)
    if pos is None or _TS_UID not in found:
        return None
    syntax = _text(found[_TS_UID][1])
    if syntax is None or syntax in _UNSUPPORTED:
        return None
    end = _walk(data, pos, explicit=syntax != _IMPLICIT, found=found, meta=False)
    if end is None or (end == len(data) and not complete):
        return None  # broken, or the header goes on past what was read
    patient_vr, patient_raw = found.get(_PATIENT_ID, (b"LO", b""))
    study_vr, study_raw = found.get(_STUDY_UID, (b"UI", b""))
    if (patient_vr, study_vr) != (b"LO", b"UI"):
        return None  # pydicom would not give these as plain strings
    patient, study = _text(patient_raw), _text(study_raw)
    if patient is None or study is None:
        return None
    return patient.strip(), study.strip() or None


def _walk(
    data: bytes, pos: int, *, explicit: bool, found: dict[int, tuple[bytes, bytes]], meta: bool
) -> int | None:
    """Walk elements from `pos`; keep the wanted values; return where it stopped (the pixel
    data, the end of the meta group, or the end of `data`), None when it cannot go on."""
    size = len(data)
    while pos < size:
        if pos + 8 > size:
            return None
        group, element = _TAG.unpack_from(data, pos)
        if meta and group != 0x0002:
            return pos
        tag = group << 16 | element
        if tag >= _PIXEL_DATA:
            return pos
        # Implicit VR: the dictionary's, which is what pydicom assumes for the two tags.
        vr = b"UI" if tag != _PATIENT_ID else b"LO"
        if explicit:
            vr = data[pos + 4 : pos + 6]
            if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                return None
            if vr in _LONG_VRS:
                if pos + 12 > size:
                    return None
                length = _LONG.unpack_from(data, pos + 8)[0]
                start = pos + 12
            else:
                length = _SHORT.unpack_from(data, pos + 6)[0]
                start = pos + 8
        else:
            length = _LONG.unpack_from(data, pos + 4)[0]
            start = pos + 8
        if length == _UNDEFINED or start + length > size:
            return None
        if tag in (_PATIENT_ID, _STUDY_UID, _TS_UID):
            found[tag] = (vr, data[start : start + length])
        pos = start + length
    return pos


def _text(raw: bytes) -> str | None:
    """The value as pydicom gives it for a single-valued ASCII string, else None."""
    value = raw.rstrip(b"\0 ")
    if b"\\" in value or any(b < 0x20 or b > 0x7E for b in value):
        return None
    return value.decode("ascii")
