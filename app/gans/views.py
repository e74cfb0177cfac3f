"""What a training job's page shows: loss and FID curves, the snapshot grids, run facts."""

from __future__ import annotations

from typing import Any

from app.gans.service import run_logs
from app.models import Job
from app.web.line_chart import NON_NEGATIVE, UNIT_INTERVAL, interactive_line_chart

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
