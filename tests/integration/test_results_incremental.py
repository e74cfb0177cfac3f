"""The results page reads only the answers added since its last read (issue 18, cold page).

A live study's answer log is extended answer by answer through the real reading service; it
must always equal a read from scratch and the export rows, on SQLite and PostgreSQL, and fall
back to a full read when answers up to its last id changed.
"""

from __future__ import annotations

from sqlalchemy import select
from study_fixtures import TOTAL, answer_as, build_read_study

from app.db import session_scope
from app.models import Answer, Study
from app.studies import results_cache
from app.studies.answer_log import AnswerLog, Reason, StudyReading, read_answers
from app.studies.ratings import answer_rows, study_ratings
from app.studies.results import statistics_for


def _expected(db, study) -> StudyReading:  # type: ignore[no-untyped-def]
    """What the page shows, from the export rows and study_ratings (no answer log)."""
    rows = answer_rows(db, study)
    return StudyReading(
        ratings=study_ratings(db, study),
        times_ms=[r["duration_ms"] for r in rows if not r["practice"]],
        reasons=[
            Reason(r["reader"], r["image"], r["truth"], r["answer"], r["reason"])
            for r in rows
            if r["reason"] and not r["practice"]
        ],
    )


def _same(a: StudyReading, b: StudyReading) -> None:
    assert a.ratings == b.ratings
    assert a.times_ms == b.times_ms
    assert a.reasons == b.reasons


def test_the_answer_log_grows_with_each_answer_and_equals_a_fresh_read(env) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        log = read_answers(db, study)
        _same(log.reading(), _expected(db, study))
        assert log.reading().reasons  # the fixture's readers wrote reasons
    # r4 answers the practice images, then scored ones, one by one; rita carries on too.
    for username in ("r4", "r4", "r4", "rita", "r4"):
        assert answer_as(username, built.study_id, 1) == 1
        with session_scope() as db:
            study = db.get(Study, built.study_id)
            grown = read_answers(db, study, log)
            assert grown.count == log.count + 1
            # Only the answering reader's part was rebuilt: the others are the same objects.
            changed = [i for i in grown.readers if grown.readers[i] is not log.readers.get(i)]
            assert len(changed) == 1
            _same(grown.reading(), _expected(db, study))
            _same(grown.reading(), read_answers(db, study).reading())
            log = grown
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        assert read_answers(db, study, log) is log  # nothing new: nothing read, nothing built


def test_the_answer_log_reads_again_when_earlier_answers_changed(env) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        log = read_answers(db, study)
        # An answer below the log's last id goes away (as with its reader): the log is stale.
        first = db.scalars(select(Answer).order_by(Answer.id)).first()
        db.delete(first)
    answer_as("r4", built.study_id, 1)
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        again = read_answers(db, study, log)
        assert again.count == log.count  # one gone, one added
        assert all(again.readers[i] is not log.readers.get(i) for i in again.readers)
        _same(again.reading(), _expected(db, study))


def test_statistics_from_the_extended_log_equal_those_computed_from_scratch(env) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()
    results_cache.CACHE.clear()
    with session_scope() as db:
        statistics_for(db, db.get(Study, built.study_id), "wrong")  # builds the answer log
    assert answer_as("rita", built.study_id, TOTAL) > 0  # rita finishes
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        log = results_cache.CACHE.get(("answer_log", "latest", study.id))
        assert isinstance(log, AnswerLog)
        incremental = {p: statistics_for(db, study, p) for p in ("wrong", "excluded")}
        assert results_cache.CACHE.get(("answer_log", "latest", study.id)) is not log
        results_cache.CACHE.clear()  # no log, no cached statistics: everything read again
        fresh = {p: statistics_for(db, study, p) for p in ("wrong", "excluded")}
    for policy in ("wrong", "excluded"):
        assert incremental[policy][0] == fresh[policy][0]
        assert incremental[policy][1] == fresh[policy][1]
