"""Turn a GAN checkpoint into a synthetic image set: PNGs, a manifest, optionally DICOM.

Every image is reproducible from the manifest: its class and its seed, the checkpoint's hash
and the truncation psi. Everything random about an image is drawn from a generator seeded
with its seed alone - z first, then, for families with per-pixel noise inputs (StyleGAN2),
each layer's noise - so an image does not depend on the batch it was drawn in or on the
device's random state. `manifest.csv` has the columns the image-set importer reads
(`file,source,label,group`) plus `seed`, `checkpoint_sha256` and `truncation_psi` (the psi
applied: 1 for families without a mapping network, which ignore it); `group` names the
checkpoint so a reader study can stratify by it.

DICOM export marks each file as derived and synthetic in its header (Image Type
DERIVED\\SECONDARY\\SYNTHETIC, a Derivation Description, a fixed "SYNTHETIC" patient, a
Secondary Capture SOP class and fresh UIDs) so it can never pass for a patient image.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml import run_folder
from ml.generators.index import is_index
from ml.networks.gan import build_gan
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress
from ml.training import checkpoint as ckpt
from ml.training.grid import to_uint8

MANIFEST = run_folder.MANIFEST


@dataclass(frozen=True)
class SampleResult:
    n_images: int
    per_class: dict[str, int]
    source: str
    checkpoint_sha256: str
    folder: str
    dicom: bool
    checkpoint_file: str = ""  # best.pt or checkpoint.pt: which snapshot of the run
    kimg: float = 0.0  # training images (k) the checkpoint had seen
    truncation_psi: float = 1.0  # as asked
    truncation_applied: bool = True  # False: the family has no mapping network to truncate
    seeded_noise: bool = False  # per-layer noise inputs drawn from each image's seed
    checkpoint_fid: float | None = None  # the FID its run logged for this snapshot, if any


def load_generator(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The averaged generator of a checkpoint (the raw one when the run kept no average), or
    the generator a JSON index stands for (one GAN per class, an imported TorchScript one)."""
    if is_index(path):
        from ml.generators.load import load_indexed

        return load_indexed(path, device)
    state = ckpt.load(path, device)
    config = state["config"]
    options = dict(config.get("arch_options", {}))
    if state.get("channels", 1) != 1:  # a colour (or CT stack) run, trained as `GanTraining`
        options["channels"] = state["channels"]
    models = build_gan(config["arch"], config["resolution"], len(state["class_names"]), **options)
    generator = models.generator.to(device)
    weights = state["generator_ema"] or state["generator"]
    generator.load_state_dict(weights)
    # A progressive generator keeps its level and fade-in in its state dict (extra state), so
    # it samples at the level it had reached when saved.
    generator.eval()
    return generator, state


def takes_truncation(generator: torch.nn.Module) -> bool:
    """Whether the generator has a mapping network whose w truncation psi pulls to its mean."""
    declared = getattr(generator, "takes_truncation", None)
    if isinstance(declared, bool):  # a wrapper of other generators says for them
        return declared
    return "truncation_psi" in inspect.signature(generator.forward).parameters


def noise_shapes(generator: torch.nn.Module) -> list[tuple[int, ...]] | None:
    """Shapes of one image's per-layer noise inputs, or None for families without them."""
    shapes = getattr(generator, "noise_shapes", None)
    return shapes() if callable(shapes) else None


def seeded_inputs(
    seeds: Sequence[int], z_dim: int, shapes: Sequence[tuple[int, ...]] | None
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """z (B, z_dim) and each layer's noise (B, *shape), every image from its own seed.

    z is drawn first, so adding noise inputs did not change any family's z; both are drawn on
    the CPU, whose generator gives the same numbers everywhere."""
    zs: list[torch.Tensor] = []
    per_image: list[list[torch.Tensor]] = []
    for s in seeds:
        rng = torch.Generator().manual_seed(s)
        zs.append(torch.randn(z_dim, generator=rng))
        per_image.append([torch.randn(shape, generator=rng) for shape in shapes or ()])
    if shapes is None:
        return torch.stack(zs), None
    layers = [torch.stack([image[i] for image in per_image]) for i in range(len(shapes))]
    return torch.stack(zs), layers


def snapshot_fid(run_dir: Path, kimg: float) -> float | None:
    """The FID `snapshots.jsonl` in a run folder logged at `kimg`, or None (no FID, no log)."""
    log = run_dir / run_folder.SNAPSHOTS
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if "fid" in record and abs(record.get("kimg", -1.0) - kimg) < 1e-6:
            return float(record["fid"])
    return None


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
    source = state.get("source") or f"{state['config']['arch']}@{kimg:g}kimg"
    sha = state.get("sha256") or _sha256(checkpoint)  # an index names its files' hashes
    z_dim = state["z_dim"]
    truncates = takes_truncation(generator)
    shapes = noise_shapes(generator)
    applied_psi = truncation_psi if truncates else 1.0
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    jobs = [(c, seed + i) for c in wanted for i in range(per_class)]
    total = len(jobs)
    for start in range(0, total, batch_size):
        if should_stop():
            raise Stopped(f"sampling stopped after {start} of {total} images")
        chunk = jobs[start : start + batch_size]
        z, noise = seeded_inputs([s for _, s in chunk], z_dim, shapes)
        labels = torch.as_tensor([names.index(c) for c, _ in chunk], device=device)
        kwargs: dict[str, object] = {"truncation_psi": truncation_psi} if truncates else {}
        if noise is not None:
            kwargs["noise"] = [n.to(device) for n in noise]
        with torch.no_grad():
            images = to_uint8(generator(z.to(device), labels, **kwargs))
        for (cls, s), pixels in zip(chunk, images, strict=True):
            idx = names.index(cls)
            name = f"class{idx:02d}-seed{s:07d}.png"
            Image.fromarray(pixels).save(out / name, format="PNG")
            if dicom:
                _write_dicom(out / "dicom" / name.replace(".png", ".dcm"), pixels, source, sha)
            rows.append(
                {
                    "file": name,
                    "source": "synthetic",
                    "label": cls,
                    "group": source,
                    "seed": str(s),
                    "checkpoint_sha256": sha,
                    "truncation_psi": f"{applied_psi:g}",
                }
            )
        progress(min(start + batch_size, total), total, f"{len(rows)}/{total} images")
    _write_manifest(out / MANIFEST, rows)
    if dicom:
        # The DICOM copies are a set of their own (`imageset import <out>/dicom`): one manifest
        # may not list both copies of an image, which would import it twice.
        dicom_rows = [{**r, "file": r["file"].replace(".png", ".dcm")} for r in rows]
        _write_manifest(out / "dicom" / MANIFEST, dicom_rows)
    counts = {c: per_class for c in wanted}
    return SampleResult(
        len(rows),
        counts,
        source,
        sha,
        str(out),
        dicom,
        checkpoint_file=checkpoint.name,
        kimg=kimg,
        truncation_psi=truncation_psi,
        truncation_applied=truncates,
        seeded_noise=shapes is not None,
        checkpoint_fid=snapshot_fid(checkpoint.parent, round(kimg, 6)),
    )


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if pixels.ndim == 3:  # a colour run: RGB, pixel-interleaved as the PNG's bytes are
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        # Stored value v displays as v / 255, as the PNG does. Without a window, readers
        # (ours included) stretch each image's own min..max to full contrast, so the DICOM
        # would not show the image that was sampled.
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 127.5, 255, "LINEAR_EXACT"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
