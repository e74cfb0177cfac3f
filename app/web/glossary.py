"""GET /glossary: short definitions of the metrics every benchmark and results page reports.

Public: it is reference text with no data, and a reader invited to a study may want it. The
anchors are the `term` of templates/glossary_link.html's `glossary_link(term)`; TERMS lists them
so a test can check that every link a page makes lands on an entry.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.web.templating import render

router = APIRouter()

TERMS: tuple[str, ...] = (
    "auc",
    "delong",
    "fid",
    "fid-floor",
    "kid",
    "precision-recall",
    "dcr",
    "paired-quality",
    "release-gate",
    "wilson",
    "tost",
    "dprime",
    "kappa",
    "mrmc",
    "seed-workflows",
)


@router.get("/glossary")
def glossary(request: Request) -> HTMLResponse:
    return render(request, "glossary.html", {"terms": TERMS})
