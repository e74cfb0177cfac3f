"""What a classifier job's page plots from its per-epoch log (ml/training/classifier.py writes
metrics.jsonl: epoch, train_loss, val_macro_auc): the training loss and the validation AUC
that picked the best epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from app.models import Job
from app.web.line_chart import UNIT_INTERVAL, interactive_line_chart
from ml.run_folder import METRICS, read_jsonl


def epoch_series(records: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) where the epoch logged one; a resumed run may repeat an epoch, and its
    last record is the one the run kept."""
    by_epoch = {
        float(r["epoch"]): float(r[key])
        for r in records
        if r.get(key) is not None and r.get("epoch") is not None
    }
    return sorted(by_epoch.items())


def classifier_curves(job: Job) -> dict[str, Markup | None]:
    records = read_jsonl(Path(job.artefact_dir or "") / METRICS)
    loss, auc = epoch_series(records, "train_loss"), epoch_series(records, "val_macro_auc")
    return {
        "loss_chart": interactive_line_chart(
            "classifier-loss-chart",
            {"training loss": loss},
            title="Training loss per epoch",
            x_label="epoch",
            y_label="loss",
            log_option=True,
            smoothing=True,
        )
        if loss
        else None,
        "auc_chart": interactive_line_chart(
            "classifier-auc-chart",
            {"validation macro AUC": auc},
            title="Validation AUC (macro) per epoch",
            x_label="epoch",
            y_label="AUC",
            y_bounds=UNIT_INTERVAL,
        )
        if auc
        else None,
    }
