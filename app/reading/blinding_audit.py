"""Walk a reader's whole study as the browser would and list everything that could unblind it.

For every presentation: the reading page, the image it shows and the fragment that answers it.
A problem is anything that differs with the image beyond its opaque id and the counters, or
that names it: file names, keys, labels, sources, the words "real" / "synthetic" outside the
answer buttons, ancillary PNG chunks, a different pixel size or colour type, identifying
headers, practice feedback after a scored image, an opaque id seen twice (a repeat must look
new). Use it in tests and against a staging server; it answers every image, so give it a
reader whose answers do not matter.
"""

from __future__ import annotations

import difflib
import re
import struct
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Protocol

from markupsafe import escape
from sqlalchemy import select

from app.db import get_sessionmaker
from app.domain.blinding import png_chunk_types
from app.models import Image, Study, StudyItem
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
IMAGE_CACHE_CONTROL = "private, max-age=600"
OPAQUE_ID = re.compile(r"[A-Za-z0-9_-]{32}")
ORIGIN_WORDS = re.compile(r"\b(real|synthetic)\b", re.IGNORECASE)
_ENTRY = re.compile(r'name="entry" value="([^"]*)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ANSWER_LABEL = re.compile(r"<label[^>]*\bdata-answer=[^>]*>.*?</label>", re.DOTALL)
_FEEDBACK = re.compile(r'<p id="practice-feedback".*?</p>', re.DOTALL)
_PREFETCH = re.compile(r'<link rel="prefetch"[^>]*>')
_IMAGE_URL = re.compile(r"/read/\d+/image/([^\"'\s<>?#]*)")
_OPEN_DETAILS = re.compile(r'(<details id="instructions"[^>]*?)\s+open>')


class Client(Protocol):
    """A logged-in browser-like client (fastapi TestClient or httpx.Client)."""

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


def _ihdr(data: bytes) -> tuple[int, ...]:
    return struct.unpack(">IIBBBBB", data[16:29])


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


def audit_blinding(client: Client, study_id: int, *, max_steps: int = 100_000) -> list[str]:
    """Answer every image of this reader's study and return everything that could unblind it.

    An empty list means: every page and fragment is free of names, keys, labels, sources and
    origin words; pages of the same kind (practice, scored) are identical but for opaque ids
    and counters; every image is a bare PNG with the same header and generic HTTP headers.
    """
    facts = _facts(study_id)
    problems: list[str] = []
    seen: set[str] = set()
    headers_seen: dict[tuple[int, ...], str] = {}
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
        skeletons[practice][where] = _skeleton(html, {entry, *_IMAGE_URL.findall(html)})

        image = client.get(f"{base}/image/{entry}")
        problems += image_problems(image, facts, f"image {step}")
        if image.status_code == 200 and image.content[12:16] == b"IHDR":
            headers_seen.setdefault(_ihdr(image.content), f"image {step}")

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
    else:
        problems.append(f"stopped after {max_steps} images without reaching the finish page")
    if len(headers_seen) > 1:
        problems.append(
            "images differ in size, bit depth or colour type: "
            + "; ".join(f"{where}: {ihdr}" for ihdr, where in headers_seen.items())
        )
    problems += _differences(skeletons[False], "scored")
    problems += _differences(skeletons[True], "practice")
    return problems
