"""Turn a GAN checkpoint into a synthetic image set: PNGs, a manifest, optionally DICOM.

Every image is reproducible from the manifest: its class and its seed (z is drawn from a
generator seeded with that seed alone), the checkpoint's hash and the truncation psi.
`manifest.csv` has the columns the image-set importer reads (`file,source,label,group`) plus
`seed`; `source` names the checkpoint so a reader study can stratify by it.

DICOM export marks each file as derived and synthetic in its header (Image Type
DERIVED\\SECONDARY\\SYNTHETIC, a Derivation Description, a fixed "SYNTHETIC" patient, a
Secondary Capture SOP class and fresh UIDs) so it can never pass for a patient image.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.networks.gan import build_gan
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress
from ml.training import checkpoint as ckpt
from ml.training.grid import to_uint8

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class SampleResult:
    n_images: int
    per_class: dict[str, int]
    source: str
    checkpoint_sha256: str
    folder: str
    dicom: bool


def load_generator(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The averaged generator of a checkpoint (the raw one when the run kept no average)."""
    state = ckpt.load(path, device)
    config = state["config"]
    models = build_gan(
        config["arch"],
        config["resolution"],
        len(state["class_names"]),
        **config.get("arch_options", {}),
    )
    generator = models.generator.to(device)
    weights = state["generator_ema"] or state["generator"]
    generator.load_state_dict(weights)
    # A progressive generator keeps its level and fade-in in its state dict (extra state), so
    # it samples at the level it had reached when saved.
    generator.eval()
    return generator, state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sample_images(
    checkpoint: Path,
    out: Path,
    *,
    per_class: int,
    classes: Sequence[str] | None = None,
    truncation_psi: float = 1.0,
    seed: int = 0,
    dicom: bool = False,
    batch_size: int = 64,
    device: str = "cpu",
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> SampleResult:
    """`per_class` images of each class (default: all the run's classes) into `out`."""
    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    generator, state = load_generator(checkpoint, device)
    names: list[str] = list(state["class_names"])
    wanted = list(classes) if classes else names
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; the run has {names}")
    kimg = state["counters"]["nimg"] / 1000.0
    source = f"{state['config']['arch']}@{kimg:g}kimg"
    sha = _sha256(checkpoint)
    z_dim = state["z_dim"]
    takes_psi = "truncation_psi" in inspect.signature(generator.forward).parameters
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    jobs = [(c, seed + i) for c in wanted for i in range(per_class)]
    total = len(jobs)
    for start in range(0, total, batch_size):
        if should_stop():
            raise Stopped(f"sampling stopped after {start} of {total} images")
        chunk = jobs[start : start + batch_size]
        z = torch.stack(
            [torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for _, s in chunk]
        ).to(device)
        labels = torch.as_tensor([names.index(c) for c, _ in chunk], device=device)
        with torch.no_grad():
            kwargs = {"truncation_psi": truncation_psi} if takes_psi else {}
            images = to_uint8(generator(z, labels, **kwargs))
        for (cls, s), pixels in zip(chunk, images, strict=True):
            idx = names.index(cls)
            name = f"class{idx:02d}-seed{s:07d}.png"
            Image.fromarray(pixels).save(out / name, format="PNG")
            if dicom:
                _write_dicom(out / "dicom" / name.replace(".png", ".dcm"), pixels, source, sha)
            rows.append(
                {"file": name, "source": "synthetic", "label": cls, "group": source, "seed": str(s)}
            )
        progress(min(start + batch_size, total), total, f"{len(rows)}/{total} images")
    with (out / MANIFEST).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "source", "label", "group", "seed"])
        writer.writeheader()
        writer.writerows(rows)
    counts = {c: per_class for c in wanted}
    return SampleResult(len(rows), counts, source, sha, str(out), dicom)


def _write_dicom(path: Path, pixels: np.ndarray, source: str, checkpoint_sha: str) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.ConversionType = "SYN"  # synthesised image (DICOM PS3.3 C.8.6.1)
    ds.ImageType = ["DERIVED", "SECONDARY", "SYNTHETIC"]
    ds.DerivationDescription = f"Synthetic image generated by a GAN ({source}); not a patient"
    ds.ImageComments = f"SYNTHETIC. Generator checkpoint sha256 {checkpoint_sha}"
    ds.PatientName = "SYNTHETIC^IMAGE"
    ds.PatientID = "SYNTHETIC"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
