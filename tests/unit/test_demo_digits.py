"""The digits benchmark's source writer, and the demo study's display at native resolution."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from app.demo.digits import DIGITS_CLASSES, write_digits_dataset
from app.demo.workspace import CONVINCING_SIDE, native_display, resolution_note
from app.domain.display_geometry import MIN_DISPLAY_SIZE


def test_digits_are_written_folder_per_class_with_one_patient_each(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.datasets import load_digits

    digits = load_digits()
    dest, counts = write_digits_dataset(tmp_path / "digits")
    expected = {name: int((digits.target == d).sum()) for d, name in DIGITS_CLASSES.items()}
    assert counts == expected and sum(counts.values()) > 300
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == sorted(expected)
    for name, n in expected.items():
        assert len(list((dest / name).glob("*.png"))) == n
    with (dest / "patients.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(expected.values())
    # The digits carry no writer id: every image is its own patient, so no split can leak one.
    assert len({r["patient_id"] for r in rows}) == len(rows)
    assert "NON-MEDICAL" in (dest / "ATTRIBUTION.txt").read_text()

    # Pixels keep their 17 grey levels (0-16 scaled to 0-255) at the native 8x8.
    first = rows[0]["file"]
    index = int(first.split("-")[-1].removesuffix(".png"))
    with Image.open(dest / first) as im:
        assert im.size == (8, 8) and im.mode == "L"
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.round(digits.images[index] * 255 / 16).astype(np.uint8))

    # Writing again changes nothing (a restarted demo reuses the folder).
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    write_digits_dataset(dest)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")} == before


def test_demo_study_shows_gan_images_at_native_size_with_a_note_when_too_small() -> None:
    # 32 px samples are shown at the smallest display the reading page allows, not 512 px.
    assert native_display(32).size == MIN_DISPLAY_SIZE
    assert native_display(256).size == 256
    note = resolution_note(32, MIN_DISPLAY_SIZE)
    assert "32 px" in note and f"{MIN_DISPLAY_SIZE} px" in note and "not whether" in note
    assert "shown at that size" in resolution_note(64, 64)
    assert resolution_note(CONVINCING_SIDE, CONVINCING_SIDE) == ""
