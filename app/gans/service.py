"""GAN training and sampling jobs: start them, read a run's logs, turn samples into a set.

A training job's artefact folder is the run folder of `ml.training.gan.train_gan`
(checkpoint.pt, metrics.jsonl, snapshots.jsonl, grids/, run.json): a redelivered job resumes
from it. A sampling job writes PNGs and a manifest; when it succeeds, the same transaction that
ends the job imports them as a synthetic image set through the ordinary image-set importer, so
sampled images are checked and blinded exactly like uploaded ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.domain.form_values import decimal_number, whole_number
from app.gans.job_types import sample_spec, train_gan_spec, translate_spec
from app.jobs.outcomes import JobOutputError
from app.jobs.service import create_job
from app.jobs.specs import SpecError
from app.models import Dataset, ImageSet, Job
from ml import run_folder
from ml.generators.index import PER_CLASS_BEST, PER_CLASS_LAST, TORCHSCRIPT_INDEX
from ml.networks.gan_families import TRUNCATION_FAMILIES
from ml.run_folder import read_jsonl
from ml.training.cyclegan_config import CycleGanConfig
from ml.training.gan_config import BEST, CHECKPOINT, GanConfig

MAX_PER_CLASS = 10_000
# The job that checks an uploaded TorchScript generator; once it succeeded it is sampled
# like a training run (`app.gans.byo`).
IMPORT_GENERATOR = "import_generator"
# Which checkpoint of a run a sampling job reads: "best" (`best.pt`, the lowest FID; the last
# one when the run kept none: no FID, or private) or "last" (`checkpoint.pt`).
CHECKPOINT_CHOICES = ("best", "last")


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
    if not dataset.is_ready:
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
    classes: tuple[str, ...] = ()  # () samples every class of the run
    checkpoint: str = "best"  # one of CHECKPOINT_CHOICES: the one asked for

    def as_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "name": self.name,
            "per_class": self.per_class,
            "truncation_psi": self.truncation_psi,
            "seed": self.seed,
            "dicom": self.dicom,
        }
        if self.classes:  # only when chosen: jobs that sample every class keep their params
            params["classes"] = list(self.classes)
        return params


def parse_sample_options(
    name: str,
    per_class: str | int,
    psi: str | float = 1.0,
    seed: str | int = 0,
    dicom: Any = False,
    checkpoint: str | None = "best",
) -> SampleOptions:
    clean = " ".join((name or "").split())
    if not clean or len(clean) > 200:
        raise SpecError("name", "Name the synthetic image set (at most 200 characters).")
    n = whole_number(
        "per_class",
        per_class,
        1,
        MAX_PER_CLASS,
        f"Images per class: a whole number from 1 to {MAX_PER_CLASS}.",
    )
    truncation = decimal_number(
        "truncation_psi", psi, 0.0, 2.0, "Truncation psi: a number from 0 to 2 (1 = none)."
    )
    first_seed = whole_number("seed", seed, 0, 2**31 - 1, "Seed: a whole number from 0.")
    wants_dicom = str(dicom).lower() in {"1", "true", "on", "yes"}
    which = checkpoint_choice(checkpoint)
    return SampleOptions(clean, n, truncation, first_seed, wants_dicom, checkpoint=which)


def checkpoint_choice(value: str | None) -> str:
    which = str(value or "best").strip().lower()
    if which not in CHECKPOINT_CHOICES:
        raise SpecError("checkpoint", "Checkpoint: best (lowest FID) or last.")
    return which


def checkpoint_of(train_job: Job, which: str = "best") -> tuple[Path, str]:
    """(path, "best" or "last") of the checkpoint to sample: the best one when asked and the
    run kept one (FID early stopping ends several snapshots past it), otherwise the last."""
    folder = Path(train_job.artefact_dir or "")
    if train_job.type == IMPORT_GENERATOR:
        if not (folder / TORCHSCRIPT_INDEX).is_file():
            raise SpecError("checkpoint", "This generator has not passed its checks (yet).")
        checkpoint_choice(which)
        return folder / TORCHSCRIPT_INDEX, "imported"
    if train_job.type == "train_gan" and (folder / PER_CLASS_LAST).is_file():
        # One GAN per class: an index of every class's checkpoint stands for the run's.
        if checkpoint_choice(which) == "best":
            return folder / PER_CLASS_BEST, "best"
        return folder / PER_CLASS_LAST, "last"
    if train_job.type != "train_gan" or not (folder / CHECKPOINT).is_file():
        raise SpecError("checkpoint", "This job has no GAN checkpoint yet (wait for a snapshot).")
    if checkpoint_choice(which) == "best" and (folder / BEST).is_file():
        return folder / BEST, "best"
    return folder / CHECKPOINT, "last"


def truncation_note(arch: str, psi: float) -> str | None:
    """Why a psi other than 1 changes nothing, for families without a mapping network."""
    if psi == 1.0 or arch in TRUNCATION_FAMILIES:
        return None
    return (
        f"Truncation psi {psi:g} is ignored: {arch} has no mapping network to truncate "
        f"(only {', '.join(TRUNCATION_FAMILIES)}); the images are drawn with psi 1."
    )


def start_sampling(
    db: Session, *, owner_id: int | None, train_job: Job, options: SampleOptions, queue: str | None
) -> Job:
    path, used = checkpoint_of(train_job, options.checkpoint)
    # Recorded at the start: the run may still be training and write a new best.pt later;
    # the result's checkpoint hash says which file was read.
    params = {**options.as_params(), "checkpoint_asked": options.checkpoint}
    params["checkpoint_used"] = used
    spec = sample_spec(train_job.id, str(path), params, queue)
    return create_job(db, spec, owner_id=owner_id)


def start_translation(
    db: Session,
    *,
    owner_id: int | None,
    dataset_a: Dataset,
    dataset_b: Dataset,
    config: CycleGanConfig,
    name: str,
    split: str | None = "test",
    queue: str | None = None,
) -> Job:
    """CycleGAN from A to B (seed 004), then A's `split` translated into a synthetic set."""
    from ml.networks.cyclegan import patch_grid

    for field_name, dataset in (("dataset_a", dataset_a), ("dataset_b", dataset_b)):
        if not dataset.is_ready:
            raise SpecError(field_name, f"{dataset.name} is not ready yet.")
        if config.resolution not in dataset.info.get("resolutions", []):
            raise SpecError("resolution", f"{dataset.name} is not stored at that resolution.")
    try:
        config.check()
    except (TypeError, ValueError) as exc:
        raise SpecError("config", f"Invalid CycleGAN settings: {exc}") from None
    if patch_grid(config.resolution, config.d_layers) < 1:
        raise SpecError(
            "resolution",
            f"A {config.d_layers}-layer PatchGAN sees nothing at {config.resolution} px; "
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
        "config": asdict(config),
        "translate_split": split,
    }
    return create_job(db, translate_spec(params, queue), owner_id=owner_id)


class OutputImportError(JobOutputError):
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
        f"({result['source']}, {checkpoint_words(result)}, {psi_words(result)}, "
        f"checkpoint sha256 {sha}…)"
    )


def checkpoint_words(result: dict[str, Any]) -> str:
    """'best checkpoint (FID 348.2)' or 'last checkpoint': which snapshot a set came from."""
    if result.get("checkpoint_file") == TORCHSCRIPT_INDEX:
        return "imported TorchScript generator"
    used = "best" if result.get("checkpoint_file") in (BEST, PER_CLASS_BEST) else "last"
    fid = result.get("checkpoint_fid")
    return f"{used} checkpoint" + (f" (FID {fid:.1f})" if fid is not None else "")


def psi_words(result: dict[str, Any]) -> str:
    psi = float(result.get("truncation_psi", 1.0))
    if result.get("truncation_applied", True):
        return f"psi {psi:g}"
    return f"psi {psi:g} ignored: no mapping network"


def run_logs(job: Job) -> dict[str, Any]:
    """Ticks, snapshots and run facts of a training job's folder (empty before it starts)."""
    folder = Path(job.artefact_dir or "")
    info = run_folder.read_run_info(folder) or {}
    if info.get("per_class"):
        # Facts of the networks (sizes, versions, privacy) are the first class's run's, the
        # same for every class; none yet until that run has started.
        own = run_folder.read_run_info(folder / info["per_class"][0]["folder"])
        merged = {**own, **info} if own else {}
        return {**per_class_logs(folder, info["per_class"]), "info": merged}
    return {
        "ticks": read_jsonl(folder / run_folder.METRICS),
        "snapshots": read_jsonl(folder / run_folder.SNAPSHOTS),
        "info": info,
    }


def per_class_logs(folder: Path, runs: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """A per-class run's sub-runs' logs end to end, as one run's: kimg counts the images of
    every class so far, ticks and snapshots are numbered across classes, each record names
    its class, and a snapshot's grid is found in its class's folder."""
    ticks: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    offset = 0.0
    for run in runs:
        sub = folder / run["folder"]
        own_ticks = read_jsonl(sub / run_folder.METRICS)
        for tick in own_ticks:
            ticks.append({**tick, "tick": len(ticks) + 1, "kimg": offset + tick["kimg"]})
            ticks[-1]["class"] = run["name"]
        for shot in read_jsonl(sub / run_folder.SNAPSHOTS):
            record = {**shot, "snapshot": len(snapshots) + 1, "kimg": offset + shot["kimg"]}
            record["class"] = run["name"]
            if "grid" in shot:  # the grid route serves grids/<name>: step out to the class
                record["grid"] = f"../{run['folder']}/{run_folder.GRIDS}/{shot['grid']}"
            snapshots.append(record)
        if own_ticks:
            offset += own_ticks[-1]["kimg"]
    return {"ticks": ticks, "snapshots": snapshots}
