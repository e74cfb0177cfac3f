"""Readers under faults against the real server (``synthbench serve``, two uvicorn workers) on
SQLite and PostgreSQL: double submits, some racing, resends after connection errors and a
server restart mid-run. Afterwards the database must match the clients' log exactly: nothing
lost, nothing twice, every answer with its reader, image and value.

bench/reading_load.py runs the same code at full size (200 readers x 50 answers)."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
from sqlalchemy import func, select
from support import ROOT, Env

from app.db import get_sessionmaker, session_scope
from app.domain.answers import AnswerInput
from app.models import Answer, ScheduleEntry, Study, StudyReader
from app.reading import service

sys.path.insert(0, str(ROOT / "bench"))
from load_check import compare, problems
from load_faults import LoadPlan, Restart, run_load
from load_server import ServerControl
from load_study import build_study

READERS, ANSWERS = 20, 10


def test_answers_survive_double_submits_and_a_restart(env: Env) -> None:
    # SIGKILL: answers committed whose response never left are resent, the case idempotence is
    # for. (A graceful SIGTERM ends every test here; the bench restarts with either.)
    stop = signal.SIGKILL
    study = build_study(READERS, ANSWERS)
    plan = LoadPlan(
        READERS,
        ANSWERS,
        double_share=0.1,
        restarts=(Restart(0.5, stop),),
        image_check_share=0.2,
        seed=8,
    )
    with ServerControl(env.environ(), env.home, workers=2) as server:
        log = asyncio.run(run_load(server.url, study, plan, server))
    integrity = compare(log, study)

    assert problems(log, plan.total, 1, integrity) == [], server.tail()
    assert (integrity.lost, integrity.duplicated, integrity.misattributed) == ([], [], [])
    assert integrity.logged == integrity.stored == READERS * ANSWERS
    # The restart really happened: the old server is gone and new processes served the rest.
    (restart,) = log.restarts
    old, _ = server.generations
    assert old.exit_code is not None and old.stopped_by == stop.name
    assert restart.new_pid != restart.old_pid and len(restart.new_workers) == 2
    assert not restart.new_workers & restart.old_workers
    assert 0 < restart.accepted_before < plan.total
    # ... and the faults were really exercised.
    assert log.doubles > 0 and log.racing_doubles > 0 and log.resends > 0


def _first_entry(study_id: int) -> tuple[int, str]:
    with session_scope() as db:
        study = db.get(Study, study_id)
        reader = db.scalars(select(StudyReader).where(StudyReader.study_id == study_id)).one()
        service.ensure_schedule(db, study, reader)
        first = db.scalars(
            select(ScheduleEntry.opaque_id)
            .where(ScheduleEntry.study_reader_id == reader.id)
            .order_by(ScheduleEntry.position)
        ).first()
        return reader.id, str(first)


@pytest.mark.parametrize("other", ["fake", "real"], ids=["identical", "conflicting"])
def test_submit_stored_beside_ours_between_our_checks(
    env: Env, monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    """Found by the load test: the other submit of a double click committed after this one saw
    no answer but before it asked which image is current, and this one answered 409 "not the
    image being shown" for an answer that was stored. Identical is a repeat (200), a different
    answer is still refused."""
    reader_id, entry = _first_entry(build_study(1, 3).study_id)
    maker = get_sessionmaker()
    original = service.current_entry

    def other_submit_first(db, study_reader):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(service, "current_entry", original)
        with maker() as winner:
            mine = winner.get(StudyReader, reader_id)
            service.record_answer(winner, mine, entry, AnswerInput(answer=other))
            winner.commit()
        return original(db, study_reader)

    monkeypatch.setattr(service, "current_entry", other_submit_first)
    with maker() as db:
        form = AnswerInput(answer="fake")
        if other == "fake":
            stored = service.record_answer(db, db.get(StudyReader, reader_id), entry, form)
            assert stored.answer == "fake"
        else:
            with pytest.raises(service.AlreadyAnswered):
                service.record_answer(db, db.get(StudyReader, reader_id), entry, form)
        db.commit()
    with session_scope() as db:
        assert db.scalar(select(func.count()).select_from(Answer)) == 1
        assert db.scalar(select(Answer.answer)) == other
