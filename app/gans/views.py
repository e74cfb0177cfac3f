"""What a training job's page shows: loss and FID curves, the snapshot grids, run facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.gans.service import run_logs, truncation_note
from app.models import Job
from app.web.line_chart import NON_NEGATIVE, UNIT_INTERVAL, interactive_line_chart
from ml.generators.index import PER_CLASS_BEST, PER_CLASS_LAST, TORCHSCRIPT_INDEX, read_index
from ml.networks.gan_families import TRUNCATION_FAMILIES
from ml.training.gan_config import BEST, CHECKPOINT

LOSS_KEYS = ("loss_d", "loss_g")


def training_view(job: Job) -> dict[str, Any]:
    logs = run_logs(job)
    ticks, snapshots = logs["ticks"], logs["snapshots"]
    losses = {
        key: [(t["kimg"], t[key]) for t in ticks if key in t]
        for key in LOSS_KEYS
        if any(key in t for t in ticks)
    }
    view: dict[str, Any] = {
        "run": logs["info"],
        "ticks": ticks,
        "snapshots": snapshots,
        "last_tick": ticks[-1] if ticks else None,
        "loss_chart": interactive_line_chart(
            "loss-chart",
            losses,
            title="Losses per tick (mean over the tick)",
            x_label="kimg",
            y_label="loss",
            log_option=True,
            smoothing=True,
        ),
        "fid_chart": None,
        "checkpoints": checkpoint_choices(Path(job.artefact_dir or ""), snapshots),
        "truncates": _arch(job) in TRUNCATION_FAMILIES,
        "truncation_families": ", ".join(TRUNCATION_FAMILIES),
    }
    fids = [(s["kimg"], s["fid"]) for s in snapshots if "fid" in s]
    if fids:
        view["fid_chart"] = interactive_line_chart(
            "fid-chart",
            {"FID": fids},
            title="FID of the EMA generator per snapshot",
            x_label="kimg",
            y_label="FID (lower is better)",
            y_bounds=NON_NEGATIVE,
            log_option=True,
        )
    if ticks and "augment_p" in ticks[-1]:
        view["augment_chart"] = interactive_line_chart(
            "augment-chart",
            {"p": [(t["kimg"], t["augment_p"]) for t in ticks]},
            title="ADA augmentation probability",
            x_label="kimg",
            y_label="p",
            y_bounds=UNIT_INTERVAL,
            smoothing=True,
        )
    epsilons = [(t["kimg"], t["epsilon"]) for t in ticks if "epsilon" in t]
    if epsilons:
        view["epsilon_chart"] = interactive_line_chart(
            "epsilon-chart",
            {"ε": epsilons},
            title="Privacy spent: ε per tick (DP-SGD)",
            x_label="kimg",
            y_label="ε",
            y_bounds=NON_NEGATIVE,
        )
    return view


def _arch(job: Job) -> str:
    return str(((job.params or {}).get("config") or {}).get("arch", ""))


def checkpoint_choices(folder: Path, snapshots: list[dict[str, Any]]) -> dict[str, dict]:
    """The checkpoints a sampling job can read, with the snapshot each holds: "last"
    (checkpoint.pt, the newest snapshot) and, when the run kept one, "best" (best.pt: the
    first snapshot with the lowest FID, as the loop saves it)."""
    choices: dict[str, dict] = {}
    if (folder / PER_CLASS_LAST).is_file() and snapshots:
        return _per_class_choices(folder, snapshots)
    if not (folder / CHECKPOINT).is_file() or not snapshots:
        return choices
    scored = [s for s in snapshots if "fid" in s]
    if (folder / BEST).is_file() and scored:
        best = min(scored, key=lambda s: s["fid"])  # min keeps the first of equal FIDs
        choices["best"] = {"kimg": best["kimg"], "fid": best["fid"]}
    last = snapshots[-1]
    choices["last"] = {"kimg": last["kimg"], "fid": last.get("fid")}
    return choices


def sample_view(job: Job) -> dict[str, Any]:
    """A sampling job's result in words: the checkpoint it read and whether psi applied."""
    result = job.result or {}
    params = job.params or {}
    file = result.get("checkpoint_file", "")
    used = "best" if file in (BEST, PER_CLASS_BEST) else "last"
    if file == TORCHSCRIPT_INDEX:
        used = "imported"
    view: dict[str, Any] = {"checkpoint_used": used, "checkpoint_fid": result.get("checkpoint_fid")}
    if params.get("checkpoint_asked") == "best" and used == "last":
        view["checkpoint_why"] = "the run kept no best checkpoint (no FID, or a private run)"
    psi = float(result.get("truncation_psi", params.get("truncation_psi", 1.0)))
    if not result.get("truncation_applied", True):
        view["truncation_note"] = truncation_note(str(result.get("source", "")).split("@")[0], psi)
    return view


def sample_page(job: Job) -> dict[str, Any]:
    """What a sampling job's page adds (declared in `app.gans.job_types`)."""
    return {"sampled": sample_view(job)}


def _per_class_choices(folder: Path, snapshots: list[dict[str, Any]]) -> dict[str, dict]:
    """One GAN per class: "last" is every class's last checkpoint; "best" exists when some
    class kept a best.pt, and its FID shown is the worst class's best (each class's FID is
    against that class's real images alone)."""
    choices: dict[str, dict] = {"last": {"kimg": snapshots[-1]["kimg"], "fid": None}}
    best = read_index(folder / PER_CLASS_BEST)["checkpoints"]
    if any(path.endswith(BEST) for path in best):
        fids = {}
        for shot in snapshots:
            if "fid" in shot:
                fids[shot["class"]] = min(shot["fid"], fids.get(shot["class"], shot["fid"]))
        choices["best"] = {"kimg": snapshots[-1]["kimg"], "fid": max(fids.values(), default=0)}
    return choices
