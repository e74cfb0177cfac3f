"""The job list: filters from the query string, one page of matching jobs, and the query
string that keeps the filters across pages and polls.

The page loads only the columns a row shows: `params` (large for training runs) stays unloaded,
and every filter but the name search runs on an indexed column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, load_only

from app.domain.eta import duration_text, elapsed_seconds, eta_seconds, eta_text
from app.models import Dataset, Job, JobStatus, User

PAGE_SIZE = 50
MAX_SEARCH = 100


@dataclass(frozen=True)
class JobFilters:
    """Empty fields filter nothing; `owner_id` only ever comes from an administrator's form."""

    type: str = ""
    status: str = ""
    dataset_id: int | None = None
    owner_id: int | None = None
    q: str = ""

    @property
    def active(self) -> bool:
        return bool(self.type or self.status or self.dataset_id or self.owner_id or self.q)

    def query_string(self, page: int = 1) -> str:
        """ "?type=...&page=2" for links and polls; "" when there is nothing to keep."""
        pairs: list[tuple[str, Any]] = [
            (key, value)
            for key, value in (
                ("type", self.type),
                ("status", self.status),
                ("dataset", self.dataset_id),
                ("owner", self.owner_id),
                ("q", self.q),
            )
            if value
        ]
        if page > 1:
            pairs.append(("page", page))
        return f"?{urlencode(pairs)}" if pairs else ""


def parse_filters(
    *,
    job_type: str,
    status: str,
    dataset: str,
    owner: str,
    q: str,
    known_types: set[str],
    may_filter_owner: bool,
) -> JobFilters:
    """Unknown values filter nothing rather than fail: a stale bookmark still opens the list."""
    status_values = {s.value for s in JobStatus}

    def as_id(raw: str) -> int | None:
        raw = raw.strip()
        return int(raw) if raw.isdecimal() and 0 < int(raw) < 2**31 else None

    return JobFilters(
        type=job_type if job_type in known_types else "",
        status=status if status in status_values else "",
        dataset_id=as_id(dataset),
        owner_id=as_id(owner) if may_filter_owner else None,
        q=" ".join(q.split())[:MAX_SEARCH],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(query: Select[Any], filters: JobFilters, visible_owner: int | None) -> Select[Any]:
    if visible_owner is not None:
        query = query.where(Job.owner_id == visible_owner)
    if filters.owner_id is not None:
        query = query.where(Job.owner_id == filters.owner_id)
    if filters.type:
        query = query.where(Job.type == filters.type)
    if filters.status:
        query = query.where(Job.status == JobStatus(filters.status))
    if filters.dataset_id is not None:
        query = query.where(Job.dataset_id == filters.dataset_id)
    if filters.q:
        # lower() on both sides: ILIKE is PostgreSQL's, and SQLite's LIKE ignores case only
        # for ASCII; a literal % or _ in the search means itself.
        pattern = f"%{_escape_like(filters.q.lower())}%"
        query = query.where(func.lower(Job.name).like(pattern, escape="\\"))
    return query


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    page: int
    pages: int
    total: int
    filters: JobFilters

    def link(self, page: int) -> str:
        return f"/jobs{self.filters.query_string(page)}"


# What a row of the list shows; params, result and error stay in the database.
_ROW_COLUMNS = (
    Job.id,
    Job.name,
    Job.type,
    Job.queue,
    Job.status,
    Job.progress,
    Job.message,
    Job.owner_id,
    Job.dataset_id,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
)


def job_page(
    db: Session,
    *,
    visible_owner: int | None,
    filters: JobFilters,
    page: int,
    size: int = PAGE_SIZE,
) -> JobPage:
    """One page of the matching jobs, newest first; a page past the end shows the last one."""
    count = _filtered(select(func.count()).select_from(Job), filters, visible_owner)
    total = int(db.scalar(count) or 0)
    pages = max(1, -(-total // size))
    page = min(max(page, 1), pages)
    rows = _filtered(select(Job).options(load_only(*_ROW_COLUMNS)), filters, visible_owner)
    rows = rows.order_by(Job.id.desc()).limit(size).offset((page - 1) * size)
    return JobPage(list(db.scalars(rows)), page, pages, total, filters)


def dataset_choices(db: Session, visible_owner: int | None) -> list[tuple[int, str]]:
    """Datasets that the visible jobs work on, for the filter's drop-down."""
    used = select(Job.dataset_id).where(Job.dataset_id.is_not(None))
    if visible_owner is not None:
        used = used.where(Job.owner_id == visible_owner)
    query = select(Dataset.id, Dataset.name).where(Dataset.id.in_(used.distinct()))
    return [(i, n) for i, n in db.execute(query.order_by(Dataset.name))]


def owner_choices(db: Session) -> list[tuple[int, str]]:
    """Everyone who owns a job (administrators only see this filter)."""
    owners = select(Job.owner_id).where(Job.owner_id.is_not(None)).distinct()
    query = select(User.id, User.username).where(User.id.in_(owners)).order_by(User.username)
    return [(i, n) for i, n in db.execute(query)]


@dataclass(frozen=True)
class RowTiming:
    duration: str  # "3 min 4 s"; "" when the job never started
    running: bool  # the duration is "running for", not a total
    eta: str  # "about 5 min"; "" when not running or too early to say


def row_timing(job: Job, now: datetime) -> RowTiming:
    seconds = elapsed_seconds(job.started_at, job.finished_at, now)
    running = job.status is JobStatus.running
    eta = eta_text(eta_seconds(job.progress, seconds)) if running and seconds is not None else ""
    return RowTiming(duration_text(seconds), running and seconds is not None, eta)
