"""Later gallery pages rank a privacy job's stored arrays exactly as the report ranked them.

The report is `memorisation_report` over real images (scikit-learn digits with planted copies
of training images); the pages are built only from what the worker stores: its arrays and its
summary after a JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from app.evaluation.gallery import PAGE_SIZE, page_items, risk_order
from ml.metrics.neighbours import memorisation_report


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    images = load_digits().data.astype(np.float32)
    order = np.random.default_rng(5).permutation(len(images))
    train, test, syn = images[order[:900]], images[order[900:1100]], images[order[1100:1400]]
    syn[:30] = train[:30]  # memorised copies: distance 0, the riskiest
    return memorisation_report(syn, train, test, k=3)


def _stored(report):  # type: ignore[no-untyped-def]
    summary = json.loads(json.dumps(report.summary()))
    arrays = {
        "image_ids": np.arange(1000, 1000 + report.dcr.size),
        "dcr": report.dcr,
        "nndr": report.nndr,
        "neighbour_rows": report.neighbour_indices,
        "neighbour_distances": report.neighbour_distances,
    }
    return summary, arrays


def test_the_order_from_the_stored_summary_is_the_reports(report) -> None:  # type: ignore[no-untyped-def]
    summary, arrays = _stored(report)
    ranked = risk_order(
        arrays["dcr"], arrays["nndr"], summary["thresholds"], summary["percentiles"]
    )
    assert np.array_equal(ranked, report.risk_order())


@pytest.mark.parametrize("level", ["p1", "p5"])
def test_each_page_continues_the_ranking_with_the_reports_flags(report, level: str) -> None:  # type: ignore[no-untyped-def]
    summary, arrays = _stored(report)
    n = report.dcr.size
    pages = [page_items(arrays, summary, level, p) for p in range(1, -(-n // PAGE_SIZE) + 1)]
    seen = [item["image_id"] - 1000 for page in pages for item in page]
    assert seen == report.risk_order().tolist()  # every image once, in the report's order
    assert [len(p) for p in pages[:-1]] == [PAGE_SIZE] * (len(pages) - 1)
    flags = [item["flagged"] for page in pages for item in page]
    assert flags == report.flagged[level][report.risk_order()].tolist()
    assert sum(flags) == summary["n_flagged"][level]
    second = pages[1][0]
    i = second["image_id"] - 1000
    assert [nb["row"] for nb in second["neighbours"]] == report.neighbour_indices[i].tolist()
    assert page_items(arrays, summary, level, len(pages) + 1) == []
