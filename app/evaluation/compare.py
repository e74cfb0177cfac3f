"""The compare page of GAN runs: their curves overlaid (one chart per metric, one series per
run), their sample grids side by side at the same snapshot, their benchmark numbers in one
table, and the settings in which they differ."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.evaluation import service as evaluation
from app.imagesets.release import latest_release_verdict
from app.models import Job, JobStatus
from app.web.line_chart import NON_NEGATIVE, interactive_line_chart

# (log key, chart id, title, y label): the metrics every training run logs per tick.
TICK_METRICS = (
    ("loss_d", "compare-loss-d", "Discriminator loss per tick", "loss"),
    ("loss_g", "compare-loss-g", "Generator loss per tick", "loss"),
)


def series_name(job: Job) -> str:
    """The legend entry of a run: its id (unique) and name (readable)."""
    return f"#{job.id} {job.name}" if job.name else f"#{job.id}"


def common_snapshots(snapshot_lists: list[list[int]]) -> list[int]:
    """Snapshot indices every run has, in order: the ones the grids can be lined up at."""
    if not snapshot_lists:
        return []
    shared = set(snapshot_lists[0]).intersection(*map(set, snapshot_lists[1:]))
    return sorted(shared)


def pick_snapshot(snapshots: list[dict[str, Any]], wanted: int | None) -> dict[str, Any] | None:
    """The run's snapshot `wanted` when it has one, otherwise its latest."""
    if not snapshots:
        return None
    if wanted is not None:
        for shot in snapshots:
            if shot.get("snapshot") == wanted:
                return shot
    return snapshots[-1]


def overlay_charts(runs: list[Job], logs: dict[int, dict[str, Any]]) -> list[Markup]:
    charts = []
    for key, chart_id, title, y_label in TICK_METRICS:
        series = {
            series_name(job): [(t["kimg"], t[key]) for t in logs[job.id]["ticks"] if key in t]
            for job in runs
        }
        if any(series.values()):
            charts.append(
                interactive_line_chart(
                    chart_id,
                    series,
                    title=title,
                    x_label="kimg",
                    y_label=y_label,
                    log_option=True,
                    smoothing=True,
                )
            )
    fids = {
        series_name(job): [(s["kimg"], s["fid"]) for s in logs[job.id]["snapshots"] if "fid" in s]
        for job in runs
    }
    if any(fids.values()):
        charts.append(
            interactive_line_chart(
                "compare-fid",
                fids,
                title="FID of the EMA generator per snapshot",
                x_label="kimg",
                y_label="FID (lower is better)",
                y_bounds=NON_NEGATIVE,
                log_option=True,
            )
        )
    return charts


def benchmark_rows(db: Session, principal: Principal, job: Job) -> list[dict[str, Any]]:
    """One row per synthetic set sampled from the run: the best synthetic-trained AUC, the
    newest FID and the release gate's verdict, each None until measured."""

    sets = evaluation.synthetic_sets_of(db, principal, job)
    if not sets or job.dataset_id is None:
        return []
    by_type = evaluation.evaluation_jobs(db, principal, job.dataset_id)
    rows = []
    for image_set in sets:

        def done(job_type: str, set_id: int = image_set.id) -> list[Job]:
            return [
                j
                for j in by_type[job_type]
                if j.status is JobStatus.succeeded
                and j.result
                and j.params.get("image_set_id") == set_id
            ]

        aucs = [
            j.result["macro_auc"]
            for j in done("train_classifier")
            if j.result.get("macro_auc") is not None
        ]
        # The FID of the whole set against real train, with its interval and convention.
        fids = [j.result for j in done("evaluate_fidelity") if "synthetic_vs_train" in j.result]
        fid = fids[-1]["synthetic_vs_train"] if fids else {}
        verdict = latest_release_verdict(db, principal, image_set.id)
        rows.append(
            {
                "set": image_set,
                "auc": max(aucs) if aucs else None,
                "fid": fid.get("fid"),
                "fid_interval": fid.get("fid_interval"),
                "fid_small_n": fid.get("fid_small_n", False),
                "fid_n": min(fid.get("n_a", 0), fid.get("n_b", 0)),
                "fid_dim": fid.get("dim"),
                "fid_convention": fids[-1].get("fid_convention") if fids else None,
                "fid_extractor": fids[-1].get("extractor") if fids else None,
                "release": None if verdict is None else bool(verdict.get("passes")),
            }
        )
    return rows


def compare_context(
    db: Session, principal: Principal, runs: list[Job], snapshot: int | None = None
) -> dict[str, Any]:
    from app.gans.service import run_logs

    logs = {job.id: run_logs(job) for job in runs}
    indices = common_snapshots(
        [[s["snapshot"] for s in logs[j.id]["snapshots"] if "snapshot" in s] for j in runs]
    )
    # Lined up at the snapshot asked for, else the latest one every run has.
    wanted = snapshot if snapshot in indices else (indices[-1] if indices else None)
    columns = []
    for job in runs:
        snapshots = logs[job.id]["snapshots"]
        columns.append(
            {
                "job": job,
                "config": job.params.get("config", {}),
                "shot": pick_snapshot(snapshots, wanted),
                "n_snapshots": len(snapshots),
                "benchmarks": benchmark_rows(db, principal, job),
            }
        )
    keys = sorted({k for c in columns for k in c["config"]})
    differing = [k for k in keys if len({repr(c["config"].get(k)) for c in columns}) > 1]
    return {
        "columns": columns,
        "differing": differing,
        "charts": overlay_charts(runs, logs) if runs else [],
        "snapshot_choices": indices,
        "snapshot": wanted,
        "ids_query": ",".join(str(j.id) for j in runs),
    }
