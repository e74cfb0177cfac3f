"""`run sample --dicom` writes a folder `imageset import` reads: the PNG set with its manifest,
and dicom/ as a set of its own whose DICOMs decode to the sampled pixels (issue 17).

A tiny GAN is trained on the two-sided images of `gan_fixtures`; the folders go through the
same zip and upload reader as `synthbench imageset import` (no database needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from gan_fixtures import write_two_sided
from PIL import Image

from app.imagesets.folder_upload import FolderLayoutError, folder_zip, nested_sets
from app.imagesets.ingest import IngestLimits, IngestReport, read_upload
from app.models.imageset import Origin
from ml.data.images import load_image
from ml.sampling import sample_images
from ml.training.gan import GanConfig, train_gan

LIMITS = IngestLimits(max_upload_bytes=64 * 1024 * 1024)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sampled")
    data = write_two_sided(root / "data")
    config = GanConfig(
        arch="dcgan",
        resolution=16,
        batch_size=8,
        kimg=0.016,
        tick_kimg=0.016,
        snapshot_ticks=1,
        arch_options={"base_channels": 8},
    )
    train_gan(data, root / "run", config)
    out = root / "samples"
    sample_images(root / "run" / "checkpoint.pt", out, per_class=3, seed=5, dicom=True)
    return out


def _upload(folder: Path, tmp_path: Path) -> tuple[IngestReport, list[str]]:
    archive = tmp_path / f"{folder.name}.zip"
    packed = folder_zip(folder, archive)
    report = read_upload(archive, default_origin=Origin.synthetic, limits=LIMITS)
    assert packed.n_images == len(report.entries)
    return report, packed.left_out


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_dicom_copies_have_a_manifest_of_their_own(samples: Path) -> None:
    png_rows = _rows(samples / "manifest.csv")
    dicom_rows = _rows(samples / "dicom" / "manifest.csv")
    assert len(png_rows) == 6
    assert [r["file"] for r in dicom_rows] == [r["file"][:-4] + ".dcm" for r in png_rows]
    for png, dcm in zip(png_rows, dicom_rows, strict=True):
        assert {**png, "file": ""} == {**dcm, "file": ""}  # same label, source, group, seed
        assert (samples / "dicom" / dcm["file"]).is_file()


def test_each_dicom_decodes_to_the_sampled_png(samples: Path) -> None:
    for row in _rows(samples / "dicom" / "manifest.csv"):
        path = samples / "dicom" / row["file"]
        png = np.asarray(Image.open(samples / row["file"].replace(".dcm", ".png")))
        decoded = load_image(path.read_bytes()).pixels
        # 8-bit both ways: equal once back on the 0..255 scale (before the explicit window, a
        # reader stretched each image's own min..max to full contrast).
        assert np.array_equal(np.rint(decoded * 255).astype(np.uint8), png), row["file"]
        header = pydicom.dcmread(path)
        assert "SYNTHETIC" in list(header.ImageType) and header.PatientID == "SYNTHETIC"


def test_the_png_folder_imports_without_its_dicom_copies(samples: Path, tmp_path: Path) -> None:
    report, left_out = _upload(samples, tmp_path)
    assert report.errors == [] and left_out == ["dicom"]
    assert sorted(e.name for e in report.entries) == sorted(
        r["file"] for r in _rows(samples / "manifest.csv")
    )
    assert {e.source_format for e in report.entries} == {"png"}


def test_the_dicom_folder_imports_as_a_synthetic_labelled_set(
    samples: Path, tmp_path: Path
) -> None:
    report, left_out = _upload(samples / "dicom", tmp_path)
    assert report.errors == [] and left_out == []
    labels = {r["file"]: r["label"] for r in _rows(samples / "dicom" / "manifest.csv")}
    assert {e.name: e.label for e in report.entries} == labels
    assert {e.origin for e in report.entries} == {Origin.synthetic}
    assert {e.source_format for e in report.entries} == {"dicom"}


def test_a_folder_holding_only_sets_names_them_instead_of_guessing_labels(
    samples: Path, tmp_path: Path
) -> None:
    # The run folder: samples/ (with dicom/ inside) and no manifest of its own.
    assert nested_sets(samples.parent) == [samples]
    with pytest.raises(FolderLayoutError, match="samples has one: import that folder"):
        folder_zip(samples.parent, tmp_path / "run.zip")


def test_class_folders_without_manifests_still_give_labels(tmp_path: Path) -> None:
    folder = tmp_path / "generated"
    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    report, left_out = _upload(folder, tmp_path)
    assert report.errors == [] and left_out == []
    assert sorted(e.label or "" for e in report.entries) == ["left", "left", "right", "right"]
