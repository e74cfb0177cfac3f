"""What a training job's page shows: loss and FID curves, the snapshot grids, run facts."""

from __future__ import annotations

from typing import Any

from app.gans.service import run_logs
from app.models import Job
from app.web.line_chart import line_chart

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
        "loss_chart": line_chart(
            losses, title="Losses per tick (mean over the tick)", x_label="kimg", y_label="loss"
        ),
        "fid_chart": None,
    }
    fids = [(s["kimg"], s["fid"]) for s in snapshots if "fid" in s]
    if fids:
        view["fid_chart"] = line_chart(
            {"FID": fids},
            title="FID of the EMA generator per snapshot",
            x_label="kimg",
            y_label="FID (lower is better)",
        )
    if ticks and "augment_p" in ticks[-1]:
        view["augment_chart"] = line_chart(
            {"p": [(t["kimg"], t["augment_p"]) for t in ticks]},
            title="ADA augmentation probability",
            x_label="kimg",
            y_label="p",
        )
    return view
