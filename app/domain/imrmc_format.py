"""Read iMRMC input files (.imrmc), the format of FDA's iMRMC and of RJafroc's ReadImrmc.

A file is free-text header lines, a line ``BEGIN DATA:``, then one observation per line:
``readerID,caseID,modalityID,score``. Truth rows have reader ``-1`` (their modality is
ignored; often ``0`` or ``truth``) and score 1 for a positive (signal) case, 0 for a negative
one. The header may declare ``NR:``, ``N0:``, ``N1:`` and ``NM:`` (readers, negative and
positive cases, modalities); when it does, the data must agree.

Every problem is collected with its line number (the first line is line 1), so a file can be
fixed in one go; a file with any problem must be rejected as a whole.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from app.domain.mrmc import MrmcData
from app.domain.ratings import Answer, Rating

TRUTH_READER = "-1"
BEGIN_DATA = re.compile(r"^\s*BEGIN DATA:?\s*$", re.IGNORECASE)
_DECLARATION = re.compile(r"\b(NR|N0|N1|NM)\s*:\s*(\S*)", re.IGNORECASE)
MAX_LISTED_ERRORS = 200


@dataclass(frozen=True)
class Observation:
    reader: str
    case: str
    modality: str
    score: float
    line: int


@dataclass(frozen=True)
class ImrmcFile:
    title: str
    truth: dict[str, int]  # case -> 1 positive / 0 negative
    observations: list[Observation]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def modalities(self) -> list[str]:
        return list(dict.fromkeys(o.modality for o in self.observations))

    @property
    def readers(self) -> list[str]:
        return list(dict.fromkeys(o.reader for o in self.observations))


def _header_declarations(lines: list[str], errors: list[str]) -> dict[str, tuple[int, int]]:
    """Declared counts by name (NR, N0, N1, NM) with the line that declares them."""
    declared: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(lines, start=1):
        for name, value in _DECLARATION.findall(line):
            try:
                declared[name.upper()] = (int(value.rstrip(",")), number)
            except ValueError:
                errors.append(f"Line {number}: {name.upper()}: {value!r} is not a whole number")
    return declared


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_imrmc(text: str) -> ImrmcFile:
    """Parse the text of an .imrmc file; problems are in ``errors``, each naming its line."""
    lines = text.removeprefix("\ufeff").splitlines()
    start = next((n for n, line in enumerate(lines) if BEGIN_DATA.match(line)), None)
    if start is None:
        return ImrmcFile("", {}, [], ["No 'BEGIN DATA:' line: this is not an iMRMC input file."])
    errors: list[str] = []
    declared = _header_declarations(lines[:start], errors)
    title = next((line.strip() for line in lines[:start] if line.strip()), "")
    truth: dict[str, int] = {}
    truth_line: dict[str, int] = {}
    observations: list[Observation] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, raw in enumerate(lines[start + 1 :], start=start + 2):
        if not raw.strip():
            continue
        cells = [c.strip() for c in raw.split(",")]
        if len(cells) != 4 or not all(cells):
            errors.append(
                f"Line {number}: expected readerID,caseID,modalityID,score, got {raw.strip()!r}"
            )
            continue
        reader, case, modality, score_text = cells
        score = _number(score_text)
        if score is None:
            errors.append(f"Line {number}: score {score_text!r} is not a finite number")
            continue
        if reader == TRUTH_READER:
            if score not in (0.0, 1.0):
                errors.append(f"Line {number}: truth of case {case!r} must be 0 or 1")
            elif case in truth:
                errors.append(
                    f"Line {number}: case {case!r} already has a truth on line {truth_line[case]}"
                )
            else:
                truth[case], truth_line[case] = int(score), number
            continue
        key = (reader, case, modality)
        if key in seen:
            errors.append(
                f"Line {number}: reader {reader!r} already scored case {case!r} in modality "
                f"{modality!r} on line {seen[key]}"
            )
            continue
        seen[key] = number
        observations.append(Observation(reader, case, modality, score, number))
    for o in observations:
        if o.case not in truth:
            errors.append(f"Line {o.line}: case {o.case!r} has no truth row (reader -1)")
    if not observations and not errors:
        errors.append(f"Line {start + 1}: 'BEGIN DATA:' is followed by no reader scores")
    parsed = ImrmcFile(title, truth, observations)
    actual = {
        "NR": len(parsed.readers),
        "N0": sum(v == 0 for v in truth.values()),
        "N1": sum(v == 1 for v in truth.values()),
        "NM": len(parsed.modalities),
    }
    for name, (value, number) in declared.items():
        if value != actual[name]:
            errors.append(f"Line {number}: the header declares {name}: {value} but the data "
                          f"have {actual[name]}")  # fmt: skip
    if len(errors) > MAX_LISTED_ERRORS:
        errors = [*errors[:MAX_LISTED_ERRORS], f"... and {len(errors) - MAX_LISTED_ERRORS} more"]
    return ImrmcFile(title, truth, observations, errors)


def mrmc_data(parsed: ImrmcFile) -> MrmcData:
    """The file as an MRMC design: modalities are treatments; cases are kept only where every
    reader scored them under every modality (raises ValueError when none is left)."""
    if not parsed.ok:
        raise ValueError("; ".join(parsed.errors[:5]))
    modalities, readers = parsed.modalities, parsed.readers
    cases = [c for c in parsed.truth if any(o.case == c for o in parsed.observations)]
    m_index = {m: i for i, m in enumerate(modalities)}
    r_index = {r: j for j, r in enumerate(readers)}
    c_index = {c: k for k, c in enumerate(cases)}
    scores = np.full((len(modalities), len(readers), len(cases)), np.nan)
    for o in parsed.observations:
        scores[m_index[o.modality], r_index[o.reader], c_index[o.case]] = o.score
    complete = ~np.isnan(scores).any(axis=(0, 1))
    if not complete.any():
        raise ValueError("no case was scored by every reader under every modality")
    kept = [c for c, keep in zip(cases, complete, strict=True) if keep]
    return MrmcData(
        treatments=tuple(modalities),
        readers=tuple(readers),
        cases=tuple(kept),
        truth=np.array([parsed.truth[c] == 1 for c in kept]),
        scores=scores[:, :, complete],
    )


_LABEL = re.compile(r"^\s*(reader|case)\s+(\S+)\s*=\s*(.+?)\s*$", re.IGNORECASE)


def header_labels(text: str) -> dict[str, dict[str, str]]:
    """``reader N = name`` and ``case N = label`` lines of the header (synthbench's export
    writes them), so a round trip gets the pseudonyms and image labels back."""
    labels: dict[str, dict[str, str]] = {"reader": {}, "case": {}}
    for line in text.removeprefix("\ufeff").splitlines():
        if BEGIN_DATA.match(line):
            break
        match = _LABEL.match(line)
        if match:
            labels[match.group(1).lower()][match.group(2)] = match.group(3)
    # Two IDs under one label would merge two readers or images: then keep the IDs.
    return {k: v if len(set(v.values())) == len(v) else {} for k, v in labels.items()}


def ratings_from_imrmc(parsed: ImrmcFile, text: str = "") -> list[Rating]:
    """The file as synthbench ratings: truth 1 is a synthetic ("fake") image, 0 a real one
    (the convention of synthbench's own export), and a score on the "how fake" axis of
    app.domain.ratings.fake_score: its sign is the answer (+ fake, - real, 0 uncertain) and
    its size the confidence. Only the ranking of scores enters the MRMC analysis.

    With one modality each case is an image; with several, image ``case@modality`` with the
    modality as its source, which app.domain.mrmc_design reads as modalities-as-treatments.
    """
    if not parsed.ok:
        raise ValueError("; ".join(parsed.errors[:5]))
    labels = header_labels(text)
    several = len(parsed.modalities) > 1
    ratings = []
    for o in parsed.observations:
        case = labels["case"].get(o.case, o.case)
        answer: Answer = "fake" if o.score > 0 else "real" if o.score < 0 else "uncertain"
        ratings.append(
            Rating(
                reader=labels["reader"].get(o.reader, o.reader),
                image=f"{case}@{o.modality}" if several else case,
                truth="fake" if parsed.truth[o.case] == 1 else "real",
                answer=answer,
                confidence=None if answer == "uncertain" else abs(o.score),
                source=o.modality if several else None,
            )
        )
    return ratings


def looks_like_imrmc(text: str) -> bool:
    return any(BEGIN_DATA.match(line) for line in text.splitlines())
