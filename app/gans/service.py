"""GAN training and sampling jobs: start them, read a run's logs, turn samples into a set.

A training job's artefact folder is the run folder of `ml.training.gan.train_gan`
(checkpoint.pt, metrics.jsonl, snapshots.jsonl, grids/, run.json): a redelivered job resumes
from it. A sampling job writes PNGs and a manifest; when it succeeds, the same transaction that
ends the job imports them as a synthetic image set through the ordinary image-set importer, so
sampled images are checked and blinded exactly like uploaded ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs.service import create_job
from app.jobs.specs import SpecError, sample_spec, train_gan_spec, translate_spec
from app.models import Dataset, DatasetStatus, ImageSet, Job
from ml.training.gan_config import CHECKPOINT, GanConfig

MAX_PER_CLASS = 10_000


def start_training(
    db: Session,
    *,
    owner_id: int | None,
    dataset: Dataset,
    config: GanConfig,
    queue: str | None,
    preset: str | None = None,
    name: str | None = None,
) -> Job:
    """`preset`: the one the form started from, kept so the job page can show what changed."""
    if dataset.status is not DatasetStatus.ready or not dataset.content_hash:
        raise SpecError("dataset", "The dataset is not ready yet; wait for its import.")
    params = config_dict(config)
    spec = train_gan_spec(dataset.id, dataset.path, dataset.content_hash, params, queue)
    if preset:
        spec = replace(spec, params={**spec.params, "preset": preset})
    return create_job(db, replace(spec, name=name), owner_id=owner_id)


def config_dict(config: GanConfig) -> dict[str, Any]:
    return asdict(config)


@dataclass(frozen=True)
class SampleOptions:
    name: str
    per_class: int
    truncation_psi: float = 1.0
    seed: int = 0
    dicom: bool = False

    def as_params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "per_class": self.per_class,
            "truncation_psi": self.truncation_psi,
            "seed": self.seed,
            "dicom": self.dicom,
        }


def parse_sample_options(
    name: str, per_class: str | int, psi: str | float = 1.0, seed: str | int = 0, dicom: Any = False
) -> SampleOptions:
    clean = " ".join((name or "").split())
    if not clean or len(clean) > 200:
        raise SpecError("name", "Name the synthetic image set (at most 200 characters).")
    try:
        n = int(str(per_class).strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_PER_CLASS:
        raise SpecError("per_class", f"Images per class: a whole number from 1 to {MAX_PER_CLASS}.")
    try:
        truncation = float(psi)
    except (TypeError, ValueError):
        truncation = -1.0
    if not 0.0 <= truncation <= 2.0:
        raise SpecError("truncation_psi", "Truncation psi: a number from 0 to 2 (1 = none).")
    try:
        first_seed = int(str(seed).strip())
    except ValueError:
        first_seed = -1
    if not 0 <= first_seed < 2**31:
        raise SpecError("seed", "Seed: a whole number from 0.")
    wants_dicom = str(dicom).lower() in {"1", "true", "on", "yes"}
    return SampleOptions(clean, n, truncation, first_seed, wants_dicom)


def checkpoint_of(train_job: Job) -> Path:
    path = Path(train_job.artefact_dir or "") / CHECKPOINT
    if train_job.type != "train_gan" or not path.is_file():
        raise SpecError("checkpoint", "This job has no GAN checkpoint yet (wait for a snapshot).")
    return path


def start_sampling(
    db: Session, *, owner_id: int | None, train_job: Job, options: SampleOptions, queue: str | None
) -> Job:
    spec = sample_spec(train_job.id, str(checkpoint_of(train_job)), options.as_params(), queue)
    return create_job(db, spec, owner_id=owner_id)


def start_translation(
    db: Session,
    *,
    owner_id: int | None,
    dataset_a: Dataset,
    dataset_b: Dataset,
    config: dict[str, Any],
    name: str,
    split: str | None = "test",
    queue: str | None = None,
) -> Job:
    """CycleGAN from A to B (seed 004), then A's `split` translated into a synthetic set."""
    from ml.networks.cyclegan import patch_grid
    from ml.training.cyclegan import CycleGanConfig

    for field_name, dataset in (("dataset_a", dataset_a), ("dataset_b", dataset_b)):
        if dataset.status is not DatasetStatus.ready or not dataset.content_hash:
            raise SpecError(field_name, f"{dataset.name} is not ready yet.")
        if config.get("resolution") not in dataset.info.get("resolutions", []):
            raise SpecError("resolution", f"{dataset.name} is not stored at that resolution.")
    try:
        checked = CycleGanConfig(**config)
        checked.check()
    except (TypeError, ValueError) as exc:
        raise SpecError("config", f"Invalid CycleGAN settings: {exc}") from None
    if patch_grid(checked.resolution, checked.d_layers) < 1:
        raise SpecError(
            "resolution",
            f"A {checked.d_layers}-layer PatchGAN sees nothing at {checked.resolution} px; "
            "use a larger resolution or fewer discriminator layers.",
        )
    params = {
        "name": name,
        "dataset_a_id": dataset_a.id,
        "dataset_b_id": dataset_b.id,
        "dataset_a_path": dataset_a.path,
        "dataset_b_path": dataset_b.path,
        "dataset_a_hash": dataset_a.content_hash,
        "dataset_b_hash": dataset_b.content_hash,
        "config": config,
        "translate_split": split,
    }
    return create_job(db, translate_spec(params, queue), owner_id=owner_id)


class OutputImportError(RuntimeError):
    """The job's images could not become an image set; the message says why."""


def import_outputs(job_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """After a sampling or translation job's handler succeeded, before the job is marked
    succeeded: import its images as a synthetic image set, in a transaction of its own.

    Run by the worker between the handler and the final status, so a job is never seen as
    succeeded without its set. Idempotent: a retried job whose set already exists (the worker
    died after the import) finds it by the job id in its description instead of importing
    twice. Returns the fields to add to the job's result.
    """
    from app.imagesets.service import IngestError, create_image_set

    with session_scope() as db:
        job = db.get(Job, job_id)
        if job is None or job.type not in ("sample", "translate") or job.owner_id is None:
            return {}  # a command-line run without an owner: the images stay in its folder
        description = _set_description(job, result)
        marker = description.split(" (", 1)[0] + " ("
        existing = db.scalar(
            select(ImageSet.id).where(
                ImageSet.owner_id == job.owner_id, ImageSet.description.startswith(marker)
            )
        )
        if existing is not None:
            return {"image_set_id": existing}
        try:
            image_set = create_image_set(
                db,
                owner_id=job.owner_id,
                name=job.params["name"],
                default_origin=None,
                upload_path_or_file=Path(result["zip"]),
                description=description,
            )
        except IngestError as exc:
            raise OutputImportError(
                "The images could not be imported as an image set: " + "; ".join(exc.errors)
            ) from None
        image_set.kind = "sampling" if job.type == "sample" else "translation"
        db.commit()
        return {"image_set_id": image_set.id}


def _set_description(job: Job, result: dict[str, Any]) -> str:
    sha = result["checkpoint_sha256"][:16]
    if job.type == "translate":
        return (
            f"CycleGAN translation by job {job.id} ({result['group']}, {result['direction']}, "
            f"{result['n_translated']} images of split {result['translate_split']}; "
            f"checkpoint sha256 {sha}…)"
        )
    return (
        f"Sampled by job {job.id} from training job {job.params['train_job_id']} "
        f"({result['source']}, psi {job.params.get('truncation_psi', 1.0)}, "
        f"checkpoint sha256 {sha}…)"
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line being written right now
    return rows


def run_logs(job: Job) -> dict[str, Any]:
    """Ticks, snapshots and run facts of a training job's folder (empty before it starts)."""
    folder = Path(job.artefact_dir or "")
    info_path = folder / "run.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return {
        "ticks": read_jsonl(folder / "metrics.jsonl"),
        "snapshots": read_jsonl(folder / "snapshots.jsonl"),
        "info": info,
    }
