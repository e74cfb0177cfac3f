"""The leakage gate: a study opens to readers only when no channel but the pixels separates
real from synthetic better than a random feature would, or when the researcher has recorded
why it may open anyway.

The audit here runs where the study is created, on what the server will serve: every scored
presentation of ``WALKS`` simulated readers (their orders are those real readers 1..WALKS get,
from the study seed), each image's served bytes made exactly as the reading route makes them,
with a fresh opaque id. Channels: byte length, dimensions, flat border lines, response headers,
the time to produce the response, the opaque id and the position. ``synthbench study audit``
measures the same channels over HTTP (app/reading/study_audit.py).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.blinding import opaque_id
from app.domain.display_geometry import DisplayGeometry, flat_border_lines
from app.domain.leakage import ChannelResult, Walk, channel_result, describe, leaking
from app.domain.reader_study import ImageRef, Selection, reader_schedule, reader_seed
from app.imagesets.storage import display_path
from app.models import Image, Study, StudyItem
from app.studies.design import load_design
from app.studies.display import SERVED_HEADERS, SERVED_MEDIA_TYPE, served_png

WALKS = 5
# Enough presentations per walk for the null to be narrow; bigger studies are subsampled
# (positions are shuffled, so the first ones of a walk are a random sample).
MAX_PRESENTATIONS = 200
CHANNELS = (
    "byte_length",
    "dimensions",
    "border",
    "headers",
    "response_time",
    "presentation_id",
    "position",
)
MAX_REASON = 2000


class GateClosed(Exception):
    """The study leaks and no reason to open it anyway is recorded."""


@dataclass(frozen=True)
class Presentation:
    """What a reader can observe about one served image, beside its pixels."""

    synthetic: bool
    byte_length: int
    width: int
    height: int
    border: int
    headers: str  # the response headers a reader sees, minus Date, as one string
    response_s: float
    opaque_id: str
    position: int


def features(walk: list[Presentation]) -> dict[str, Walk]:
    """Each channel as (numeric feature, truth) over one walk."""
    truth = [p.synthetic for p in walk]
    header_codes = {h: i for i, h in enumerate(sorted({p.headers for p in walk}))}
    id_rank = {i: r for r, i in enumerate(sorted(p.opaque_id for p in walk))}
    columns: dict[str, list[float]] = {
        "byte_length": [p.byte_length for p in walk],
        "dimensions": [p.width * 100_000 + p.height for p in walk],
        "border": [p.border for p in walk],
        "headers": [header_codes[p.headers] for p in walk],
        "response_time": [p.response_s for p in walk],
        # A reader can only sort ids; their rank is everything an id could say.
        "presentation_id": [id_rank[p.opaque_id] for p in walk],
        "position": [p.position for p in walk],
    }
    return {name: (values, truth) for name, values in columns.items()}


def channel_results(walks: list[list[Presentation]]) -> list[ChannelResult]:
    per_walk = [features(w) for w in walks if w]
    return [channel_result(name, [f[name] for f in per_walk]) for name in CHANNELS]


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def header_signature(headers: dict[str, str]) -> str:
    return "; ".join(f"{k.lower()}: {v}" for k, v in sorted(headers.items()) if k.lower() != "date")


def _selection(db: Session, study_id: int) -> tuple[Selection, dict[str, tuple[str, bool]]]:
    rows = db.execute(
        select(StudyItem, Image)
        .join(Image, Image.id == StudyItem.image_id)
        .where(StudyItem.study_id == study_id)
    ).all()
    refs = {
        practice: tuple(
            ImageRef(str(item.id), image.origin.value, image.label, image.source)
            for item, image in rows
            if item.practice is practice
        )
        for practice in (False, True)
    }
    items = {str(item.id): (image.key, image.origin.value == "synthetic") for item, image in rows}
    return Selection(scored=refs[False], practice=refs[True]), items


def simulated_walks(db: Session, study: Study, walks: int = WALKS) -> list[list[Presentation]]:
    """The scored presentations readers 1..walks would get, served as the route serves them."""
    design = load_design(study.design or {})
    selection, items = _selection(db, study.id)
    if not selection.scored:
        return []
    pixels_by_key: dict[str, np.ndarray] = {}
    out = []
    for index in range(walks):
        seed = reader_seed(design.selection.seed, index) & ((1 << 62) - 1)
        schedule = reader_schedule(selection, seed, design.selection.repeat_share)
        scored = [s for s in schedule if not s.practice][:MAX_PRESENTATIONS]
        walk = []
        for item in scored:
            key, synthetic = items[item.image_key]
            token = opaque_id()
            started = time.perf_counter()
            # What the route does per request: load the rendering, dither, encode.
            pixels = np.load(display_path(study.id, key), allow_pickle=False)
            data = served_png(pixels, token)
            elapsed = time.perf_counter() - started
            pixels_by_key.setdefault(key, pixels)
            served = _decode_grey(data)
            width, height = png_size(data)
            walk.append(
                Presentation(
                    synthetic=synthetic,
                    byte_length=len(data),
                    width=width,
                    height=height,
                    border=flat_border_lines(served),
                    headers=header_signature(
                        {
                            **SERVED_HEADERS,
                            "Content-Type": SERVED_MEDIA_TYPE,
                            "Content-Length": str(len(data)),
                        }
                    ),
                    response_s=elapsed,
                    opaque_id=token,
                    position=item.position,
                )
            )
        out.append(walk)
    return out


def _decode_grey(data: bytes) -> np.ndarray:
    """The served image as grey levels: a colour study's RGB through BT.601 luminance, the
    way the HTTP audit (app/reading/blinding_audit.py) looks at borders, so both agree."""
    import io

    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L") if im.mode != "L" else im)


def audit_json(
    results: list[ChannelResult], *, how: str, geometry: DisplayGeometry
) -> dict[str, Any]:
    return {
        "how": how,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "geometry": geometry.to_json(),
        "passed": not leaking(results),
        "channels": [r.to_json() for r in results],
    }


def run_gate(
    db: Session,
    study: Study,
    geometry: DisplayGeometry,
    walks: int = WALKS,
    unrendered: list[str] | None = None,
) -> dict[str, Any]:
    """Audit what the study will serve and store the result on the study. A study with
    images that cannot be rendered (files missing or undecodable) cannot be audited and
    stays closed, whatever a reason says: those images could not be served at all."""
    if unrendered:
        study.leakage_audit = {
            **audit_json([], how="not audited", geometry=geometry),
            "passed": False,
            "unrendered": unrendered[:20],
        }
    else:
        results = channel_results(simulated_walks(db, study, walks))
        study.leakage_audit = audit_json(
            results, how=f"{walks} simulated readers, served bytes", geometry=geometry
        )
    db.flush()
    return study.leakage_audit


def ensure_audited(db: Session, study: Study) -> dict[str, Any]:
    """The stored audit; studies from before the gate are audited (and rendered) now."""
    # Re-run where files were missing: they may have been restored since.
    if study.leakage_audit is None or study.leakage_audit.get("unrendered"):
        from app.studies.display import render_study, study_geometry

        geometry = study_geometry(db, study)
        unrendered = render_study(db, study, geometry, only_missing=True)
        run_gate(db, study, geometry, unrendered=unrendered)
    return study.leakage_audit or {}


def is_open(study: Study) -> bool:
    audit = study.leakage_audit or {}
    if audit.get("unrendered"):
        return False
    return bool(audit.get("passed")) or bool(study.blinding_override)


def ensure_open(db: Session, study: Study) -> None:
    """Raise GateClosed unless readers may see this study's images."""
    audit = ensure_audited(db, study)
    if audit.get("unrendered"):
        raise GateClosed(
            "This study is not open to readers: some of its images cannot be shown "
            "(their files are missing or cannot be decoded)."
        )
    if audit.get("passed") or study.blinding_override:
        return
    failing = [c["channel"].replace("_", " ") for c in audit.get("channels", []) if not c["passed"]]
    raise GateClosed(
        "This study is not open to readers yet: its blinding audit found that "
        f"{', '.join(failing) or 'a channel'} separates real from synthetic images."
    )


def record_override(db: Session, study: Study, reason: str) -> None:
    reason = " ".join(reason.split())[:MAX_REASON]
    if len(reason) < 10:
        raise ValueError("Give the reason in a sentence (10 characters or more).")
    study.blinding_override = reason
    db.flush()


def channel_rows(study: Study) -> list[dict[str, Any]]:
    return list((study.leakage_audit or {}).get("channels", []))


def methods_line(study: Study) -> str | None:
    """The blinding line of the methods: what the gate found, and any recorded reason."""
    audit = study.leakage_audit
    if not audit:
        return None
    if audit.get("unrendered"):
        return "Blinding audit not run: some images could not be rendered for display."
    results = [
        ChannelResult(**{k: v for k, v in c.items() if k != "passed"}) for c in audit["channels"]
    ]
    failing = leaking(results)
    line = (
        f"Blinding audit ({audit.get('how', 'served bytes')}): every image served as the same "
        f"{audit['geometry']['size']} px 8-bit "
        f"{'RGB' if audit['geometry'].get('colour') else 'grey'} PNG of one byte length, "
        f"{'centre-cropped' if audit['geometry']['aspect'] == 'crop' else 'padded'} to square"
        + (
            f", every source first brought to {audit['geometry']['native']} px"
            if audit["geometry"].get("native")
            else ""
        )
        + "; "
    )
    if not failing:
        line += "no channel but the pixels separated the sources beyond a random feature's 95th "
        line += "percentile AUC."
    else:
        line += (
            "channels above the random-feature 95th percentile: "
            + "; ".join(describe(r) for r in failing)
            + "."
        )
    if study.blinding_override:
        line += f" Opened despite the audit; the researcher's reason: {study.blinding_override}"
    return line
