"""CycleGAN round trips scored by the shared quality module, as the translate job's page shows
them: digits against a blurred "round trip" of themselves, through the job's own functions."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from quality_fixtures import digit_pairs

from ml.metrics.quality import METRICS
from ml.training.cyclegan import _mean_metrics, reconstruction_metrics


def _round_trips() -> tuple[torch.Tensor, torch.Tensor]:
    x, _ = digit_pairs(n=6)
    x = F.interpolate(x, size=(16, 16), mode="bilinear") * 2 - 1
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return x, blurred


def test_round_trip_metrics_cover_all_six_and_l1() -> None:
    x, rebuilt = _round_trips()
    per_image = reconstruction_metrics(x, rebuilt)
    assert set(per_image) == {"l1", *METRICS}
    assert all(len(v) == 6 for v in per_image.values())
    same = reconstruction_metrics(x, x)
    assert min(same["ssim"]) > 0.999999 and max(same["ms_gmsd"]) < 1e-6
    assert max(per_image["ssim"]) < 0.999 and min(per_image["mdsi"]) > 0


def test_translate_page_shows_a_row_per_round_trip() -> None:
    from app.web.templating import templates

    x, rebuilt = _round_trips()
    means = reconstruction_metrics(x, rebuilt)
    result = {
        "n_translated": 6,
        "translated_cycle": _mean_metrics(means, "cycle"),
        "cycle": _mean_metrics(means, "cycle_a") | _mean_metrics(means, "cycle_b"),
    }
    html = templates.env.get_template("jobs/translate_quality.html").render(
        job=SimpleNamespace(result=result)
    )
    for row in ("Translated split", "A → B → A", "B → A → B", "MS-GMSD ↓", "HaarPSI ↑"):
        assert row in html, row
    assert f"{result['translated_cycle']['cycle_haarpsi']:.4g}" in html
    assert "Mean absolute difference" in html
