"""Walk a reader's whole study as the browser would and list everything that could unblind it.

For every presentation: the reading page, the image it shows and the fragment that answers it.
A problem is anything that differs with the image beyond its opaque id and the counters, or
that names it: file names, keys, labels, sources, the words "real" / "synthetic" outside the
answer buttons, ancillary PNG chunks, a different pixel size or colour type, a different PNG
encoding (IDAT chunking, zlib settings, row filters: a second encoder's fingerprint),
identifying headers on any response, practice feedback after a scored image, an opaque id seen
twice (a repeat must look new) or one too regular to be unguessable. Use it in tests and
against a staging server; it answers every image, so give it a reader whose answers do not
matter (``synthbench study audit`` uses one whose writes are thrown away).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise, takewhile
from pathlib import PurePath
from typing import Any, Protocol

import numpy as np
from markupsafe import escape
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import get_sessionmaker
from app.domain.blinding import PNG_SIGNATURE, png_chunk_types
from app.domain.display_geometry import flat_border_lines
from app.domain.leakage import ChannelResult
from app.models import Image, Origin, ScheduleEntry, Study, StudyItem
from app.studies.blinding_gate import Presentation, channel_results
from app.studies.design import ReadingOptions, load_design

# Headers any response of ours may carry; anything else on an image response is a finding.
GENERIC_IMAGE_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "cache-control",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "x-frame-options",
        "cross-origin-opener-policy",
        "date",
        "server",
    }
)
IMAGE_CACHE_CONTROL = "private, max-age=600"  # app.studies.display.IMAGE_CACHE
# Headers that identify a file (a name, a version, a location): on no response of a reader's.
FILE_HEADERS = frozenset(
    {"etag", "last-modified", "content-disposition", "content-location", "link"}
)
# Server-set numbers and dates: a file named 0012.png must not match content-length 10012.
_NUMERIC_HEADERS = frozenset({"content-length", "date"})
# 32 URL-safe characters: 192 bits when random (app.domain.blinding.opaque_id).
OPAQUE_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# Random 32-character ids use about 25 of the 64 characters; under 12 means a pattern.
MIN_DISTINCT_CHARS = 12
# Two random ids share a prefix of 11 characters with odds of 1 in 7e19 per pair: anything
# longer is a counter, a timestamp or a study/reader prefix, all guessable.
MAX_SHARED_AFFIX = 10
ORIGIN_WORDS = re.compile(r"\b(real|synthetic)\b", re.IGNORECASE)
_ENTRY = re.compile(r'name="entry" value="([^"]*)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ANSWER_LABEL = re.compile(r"<label[^>]*\bdata-answer=[^>]*>.*?</label>", re.DOTALL)
_FEEDBACK = re.compile(r'<p id="practice-feedback".*?</p>', re.DOTALL)
_PREFETCH = re.compile(r'<link rel="prefetch"[^>]*>')
_IMAGE_URL = re.compile(r"/read/\d+/image/([^\"'\s<>?#]*)")
_OPEN_DETAILS = re.compile(r'(<details id="instructions"[^>]*?)\s+open>')


class Client(Protocol):
    """A logged-in browser-like client: fastapi TestClient, httpx.Client, or
    app.reading.asgi_client.InProcessClient (what ``synthbench study audit`` uses)."""

    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...


@dataclass
class _Facts:
    """What the study knows and a reader must never see, and researcher text that is shown
    identically on every page (so it is not a per-image leak)."""

    reading: ReadingOptions
    forbidden: list[str] = field(default_factory=list)  # substrings: names, keys, hashes
    forbidden_words: list[str] = field(default_factory=list)  # whole words: labels, sources
    authored: list[str] = field(default_factory=list)


def _facts(study_id: int) -> _Facts:
    with get_sessionmaker()() as db:
        study = db.get(Study, study_id)
        if study is None:
            raise LookupError(f"no study {study_id}")
        images = db.scalars(
            select(Image)
            .join(StudyItem, StudyItem.image_id == Image.id)
            .where(StudyItem.study_id == study_id)
        ).all()
        design = load_design(study.design)
    facts = _Facts(reading=design.reading)
    for image in images:
        stem = PurePath(image.original_name).stem
        facts.forbidden += [image.key, image.sha256, image.original_name]
        facts.forbidden += [stem] if len(stem) >= 4 else []
        facts.forbidden_words += [w for w in (image.label, image.source) if w and len(w) >= 3]
    question = design.reading.second_question
    texts = [study.name, study.instructions]
    texts += [question.prompt, *question.choices] if question else []
    facts.authored = sorted({str(escape(t)) for t in texts if t}, key=len, reverse=True)
    facts.forbidden = sorted(set(facts.forbidden))
    facts.forbidden_words = sorted(set(facts.forbidden_words))
    return facts


def html_problems(html: str, facts: _Facts, where: str, *, feedback_allowed: bool) -> list[str]:
    """Leaks in one page or fragment."""
    problems: list[str] = []
    lowered = html.lower()
    for secret in facts.forbidden:
        if secret.lower() in lowered:
            problems.append(f"{where}: contains {secret!r}")
    text = _ANSWER_LABEL.sub("", html)
    if feedback_allowed:
        text = _FEEDBACK.sub("", text)
    elif 'id="practice-feedback"' in text:
        problems.append(f"{where}: practice feedback after a scored image")
    for authored in facts.authored:
        text = text.replace(authored, "")
    for word in facts.forbidden_words:
        if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE):
            problems.append(f"{where}: contains the label or source {word!r}")
    for match in sorted({m.group(0).lower() for m in ORIGIN_WORDS.finditer(text)}):
        problems.append(f"{where}: the word {match!r} outside the answer buttons")
    for image_id in _IMAGE_URL.findall(html):
        if not OPAQUE_ID.fullmatch(image_id):
            problems.append(f"{where}: image URL id {image_id!r} is not an opaque id")
    return problems


def header_problems(
    response: Any, facts: _Facts, where: str, *, check_names: bool = True
) -> list[str]:
    """Headers of any response that name a file or carry what the page must not."""
    names = {k.lower() for k in response.headers} & FILE_HEADERS if check_names else set()
    problems = [f"{where}: header {name!r} identifies a file" for name in sorted(names)]
    for name, value in response.headers.items():
        if name.lower() in _NUMERIC_HEADERS:
            continue
        lowered = value.lower()
        problems += [
            f"{where}: header {name!r} contains {secret!r}"
            for secret in facts.forbidden
            if secret.lower() in lowered
        ]
        problems += [
            f"{where}: header {name!r} contains the label or source {word!r}"
            for word in facts.forbidden_words
            if re.search(rf"\b{re.escape(word)}\b", value, re.IGNORECASE)
        ]
    return problems


def opaque_id_problems(ids: Iterable[str], where: str = "opaque ids") -> list[str]:
    """Ids a reader could guess or relate: not 32 URL-safe characters, too few distinct
    characters, used twice, or sharing a long prefix or suffix with another id."""
    ids = list(ids)
    problems = [
        f"{where}: {i!r} is not 32 URL-safe characters (192 random bits)"
        for i in ids
        if not OPAQUE_ID.fullmatch(i)
    ][:5]
    problems += [
        f"{where}: {i!r} uses only {len(set(i))} distinct characters, too regular to be random"
        for i in ids
        if len(set(i)) < MIN_DISTINCT_CHARS
    ][:5]
    if len(set(ids)) < len(ids):
        problems.append(f"{where}: {len(ids) - len(set(ids))} id(s) used more than once")
    for end, ordered in (("prefix", sorted(ids)), ("suffix", sorted(i[::-1] for i in ids))):
        shared = max((_common_prefix(a, b) for a, b in pairwise(ordered)), default=0)
        if shared > MAX_SHARED_AFFIX:
            problems.append(
                f"{where}: ids share a {shared}-character {end}, so they follow a pattern"
            )
    return problems


def _common_prefix(a: str, b: str) -> int:
    return sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], zip(a, b, strict=False)))


def _well_formed(data: bytes) -> bool:
    try:
        return png_chunk_types(data)[:1] == ["IHDR"]
    except ValueError:
        return False


def _ihdr(data: bytes) -> tuple[int, ...]:
    return struct.unpack(">IIBBBBB", data[16:29])


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_encoding(data: bytes) -> tuple[object, ...]:
    """What an encoder leaves in a PNG beyond the pixels: IDAT chunking, the zlib header
    (window and level) and the set of row filters. Equal for all images of one encoder and one
    size; the reading route writes one IDAT of stored deflate blocks, no row filter."""
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    idat = b"".join(payload for kind, payload in chunks if kind == b"IDAT")
    width, height, depth, colour, _, _, interlace = _ihdr(data)
    stride = 1 + (width * _CHANNELS.get(colour, 1) * depth + 7) // 8
    filters: tuple[int, ...] | str = "interlaced"
    if not interlace:
        try:
            # Bounded: never inflate more than the image can hold.
            raw = zlib.decompressobj().decompress(idat, stride * height)
            filters = tuple(sorted(set(raw[::stride])))
        except zlib.error:
            filters = "undecodable"
    idat_count = sum(kind == b"IDAT" for kind, _ in chunks)
    return (f"{idat_count} IDAT", f"zlib {idat[:2].hex()}", f"filters {filters}")


def image_problems(response: Any, facts: _Facts, where: str) -> list[str]:
    """Leaks in one image response (status, headers, PNG structure, embedded names)."""
    if response.status_code != 200:
        return [f"{where}: status {response.status_code}"]
    headers = {k.lower(): v for k, v in response.headers.items()}
    problems = [
        f"{where}: header {name!r} is not a generic one"
        for name in sorted(set(headers) - GENERIC_IMAGE_HEADERS)
    ]
    if headers.get("content-type") != "image/png":
        problems.append(f"{where}: content-type {headers.get('content-type')!r}")
    if headers.get("cache-control") != IMAGE_CACHE_CONTROL:
        problems.append(f"{where}: cache-control {headers.get('cache-control')!r}")
    # Names are held to the stricter allow-list above; values are checked like a page's.
    problems += header_problems(response, facts, where, check_names=False)
    data: bytes = response.content
    try:
        chunks = png_chunk_types(data)
    except ValueError as exc:
        return [*problems, f"{where}: not a well-formed PNG ({exc})"]
    middle = set(chunks[1:-1])
    if chunks[0] != "IHDR" or chunks[-1] != "IEND" or middle != {"IDAT"}:
        problems.append(f"{where}: PNG chunks {chunks}, expected IHDR, IDAT..., IEND")
    problems += [f"{where}: bytes contain {s!r}" for s in facts.forbidden if s.encode() in data]
    return problems


def _skeleton(html: str, ids: set[str]) -> str:
    """The page with what may legitimately change removed: ids, counters, feedback."""
    text = _PREFETCH.sub("", _FEEDBACK.sub("", html))
    text = _OPEN_DETAILS.sub(r"\1>", text)
    for opaque in ids:
        text = text.replace(opaque, "ID")
    return re.sub(r"\d+", "N", text)


def _answer_form(reading: ReadingOptions, step: int, token: str, entry: str) -> dict[str, str]:
    choices = reading.answer_choices
    answer = choices[step % len(choices)]
    form = {"csrf_token": token, "entry": entry, "answer": answer, "duration_ms": "1500"}
    bounds = reading.confidence_bounds()
    if bounds:
        form["confidence"] = str((bounds[0] + bounds[1]) // 2)
    if reading.reason_required and answer != "real":
        form["reason"] = "blinding audit"
    if reading.second_question:
        form["second_answer"] = reading.second_question.choices[0]
    return form


def _differences(pages: dict[str, str], kind: str) -> list[str]:
    if len(set(pages.values())) <= 1:
        return []
    (first_where, first), *rest = pages.items()
    for where, other in rest:
        if other != first:
            diff = difflib.unified_diff(first.splitlines(), other.splitlines(), lineterm="", n=0)
            changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            return [
                f"{kind} pages differ beyond ids and counters ({first_where} vs {where}): "
                + " | ".join(changed[:4])
            ]
    return []


@dataclass(frozen=True)
class Served:
    """What a reader can observe about one image response besides its pixels: recorded by the
    walk so the leakage channels can be fitted against the truth afterwards."""

    opaque_id: str
    position: int  # 1-based step of the walk, practice included
    practice: bool
    status: int
    byte_length: int
    width: int
    height: int
    border: int  # flat edge lines (app.domain.display_geometry.flat_border_lines)
    headers: str  # every response header but Date, as one string
    response_s: float
    sha256: str


def served(image: Any, opaque: str, step: int, practice: bool, elapsed: float) -> Served:
    data: bytes = image.content
    width = height = border = 0
    if image.status_code == 200 and _well_formed(data):
        width, height = _ihdr(data)[:2]
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                border = flat_border_lines(np.asarray(im.convert("L")))
        except (OSError, ValueError):
            border = -1
    headers = "; ".join(
        f"{k.lower()}: {v}" for k, v in sorted(image.headers.items()) if k.lower() != "date"
    )
    return Served(
        opaque, step, practice, image.status_code, len(data), width, height, border, headers,
        elapsed, hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def audit_blinding(
    client: Client,
    study_id: int,
    *,
    max_steps: int = 100_000,
    observations: list[Served] | None = None,
) -> list[str]:
    """Answer every image of this reader's study and return everything that could unblind it.

    An empty list means: every page and fragment is free of names, keys, labels, sources and
    origin words; pages of the same kind (practice, scored) are identical but for opaque ids
    and counters; every image is a bare PNG with the same header and encoding and generic HTTP
    headers; no response's headers name a file or carry a name, label or source; every opaque
    id served looks random.
    """
    facts = _facts(study_id)
    problems: list[str] = []
    seen: set[str] = set()
    headers_seen: dict[tuple[int, ...], str] = {}
    encodings_seen: dict[tuple[object, ...], str] = {}
    skeletons: dict[bool, dict[str, str]] = {True: {}, False: {}}
    base = f"/read/{study_id}"
    for step in range(1, max_steps + 1):
        page = client.get(base)
        if page.status_code != 200:
            return [*problems, f"page {step}: status {page.status_code}"]
        html = page.text
        entry_match = _ENTRY.search(html)
        if entry_match is None:  # the finish page
            problems += html_problems(html, facts, "finish page", feedback_allowed=False)
            break
        entry = entry_match.group(1)
        where = f"page {step}"
        if entry in seen:
            return [*problems, f"{where}: opaque id {entry!r} served a second time"]
        seen.add(entry)
        practice = 'id="practice-banner"' in html
        problems += html_problems(html, facts, where, feedback_allowed=False)
        problems += header_problems(page, facts, where)
        skeletons[practice][where] = _skeleton(html, {entry, *_IMAGE_URL.findall(html)})

        started = time.perf_counter()
        image = client.get(f"{base}/image/{entry}")
        elapsed = time.perf_counter() - started
        if observations is not None:
            observations.append(served(image, entry, step, practice, elapsed))
        problems += image_problems(image, facts, f"image {step}")
        if image.status_code == 200 and _well_formed(image.content):
            headers_seen.setdefault(_ihdr(image.content), f"image {step}")
            encodings_seen.setdefault(png_encoding(image.content), f"image {step}")

        token = _CSRF.search(html)
        answered = client.post(
            f"{base}/answer",
            data=_answer_form(facts.reading, step, token.group(1) if token else "", entry),
            headers={"HX-Request": "true"},
        )
        if answered.status_code != 200:
            return [*problems, f"{where}: answering failed with {answered.status_code}"]
        problems += html_problems(
            answered.text, facts, f"fragment after {where}", feedback_allowed=practice
        )
        problems += header_problems(answered, facts, f"fragment after {where}")
    else:
        problems.append(f"stopped after {max_steps} images without reaching the finish page")
    if len(headers_seen) > 1:
        problems.append(
            "images differ in size, bit depth or colour type: "
            + "; ".join(f"{where}: {ihdr}" for ihdr, where in headers_seen.items())
        )
    elif len(encodings_seen) > 1:
        problems.append(
            "images differ in PNG encoding, a second encoder's fingerprint: "
            + "; ".join(f"{where}: {', '.join(map(str, e))}" for e, where in encodings_seen.items())
        )
    problems += opaque_id_problems(seen, "served opaque ids")
    problems += _differences(skeletons[False], "scored")
    problems += _differences(skeletons[True], "practice")
    return problems


def truth_of(db: Session, opaque_ids: Iterable[str]) -> dict[str, bool]:
    """Whether each served opaque id showed a synthetic image: what a reader must not learn,
    looked up only after the walk (in the session the walk wrote its schedule in)."""
    rows = db.execute(
        select(ScheduleEntry.opaque_id, Image.origin)
        .join(StudyItem, StudyItem.id == ScheduleEntry.study_item_id)
        .join(Image, Image.id == StudyItem.image_id)
        .where(ScheduleEntry.opaque_id.in_(list(opaque_ids)))
    ).all()
    return {opaque: origin is Origin.synthetic for opaque, origin in rows}


def leakage_channels(walks: list[list[Served]], truth: dict[str, bool]) -> list[ChannelResult]:
    """Every non-content channel of the scored images served in these walks, fitted against
    the truth (app.domain.leakage); practice images are left out, their truth is told."""
    presentations = [
        [
            Presentation(
                synthetic=truth[o.opaque_id],
                byte_length=o.byte_length,
                width=o.width,
                height=o.height,
                border=o.border,
                headers=o.headers,
                response_s=o.response_s,
                opaque_id=o.opaque_id,
                position=o.position,
            )
            for o in walk
            if not o.practice and o.opaque_id in truth
        ]
        for walk in walks
    ]
    return channel_results([p for p in presentations if p])
