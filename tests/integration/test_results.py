"""Results, exports and imported ratings through the web app, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import make_user
from web_client import WebClient, csrf_from

from app.db import session_scope
from app.domain.ratings_import import parse_ratings_csv
from app.domain.statistics import study_statistics
from app.main import create_app
from app.models import (
    Answer,
    ExternalRating,
    Image,
    ImageSet,
    Origin,
    ScheduleEntry,
    Study,
    StudyItem,
    StudyReader,
    User,
)
from app.studies.ratings import answer_rows, study_ratings
from app.studies.results import answer_time_histogram, filter_reasons, forest_plot, reasons_from

# Three readers, four real and four synthetic images from two generators. R2 answers
# "uncertain" twice, so leaving uncertain answers out changes R2's n from 8 to 6.
ANSWERS = {
    "R1": "real real fake real fake fake real fake",
    "R2": "real uncertain fake real uncertain fake real real",
    "R3": "fake real real real real fake fake fake",
}
IMAGES = [("r1", "real"), ("r2", "real"), ("r3", "real"), ("r4", "real"),
          ("f1", "fake"), ("f2", "fake"), ("f3", "fake"), ("f4", "fake")]  # fmt: skip


def _ratings_csv() -> str:
    lines = ["reader,image,truth,answer,confidence,reason,source"]
    for reader, answers in ANSWERS.items():
        for i, ((image, truth), answer) in enumerate(zip(IMAGES, answers.split(), strict=True)):
            source = ("gan-a" if image in ("f1", "f2") else "gan-b") if truth == "fake" else ""
            reason = {0: "blurry edges", 4: "=cmd|' /C calc'!A0"}.get(i, "")
            lines.append(f"{reader},{image},{truth},{answer},{1 + (i % 4)},{reason},{source}")
    return "\n".join(lines) + "\n"


RATINGS_CSV = _ratings_csv()


def _count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def web(env) -> WebClient:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    make_user("bob", "bob-password", "researcher")
    make_user("rita", "rita-password", "reader")
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield WebClient(client)


def _upload(web: WebClient, name: str, text: str, **kwargs: object):  # type: ignore[no-untyped-def]
    token = csrf_from(web.get("/studies/import").text)
    return web.client.post(
        "/studies/import",
        data={"name": name, "csrf_token": token},
        files={"file": ("ratings.csv", text.encode(), "text/csv")},
        **kwargs,
    )


def _reader_cells(html: str, reader: str) -> dict[str, str]:
    row = re.search(rf'<tr data-reader="{reader}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {reader}"
    return dict(re.findall(r'data-col="(\w+)" data-value="([^"]*)"', row.group(1)))


def _as_number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_imported_ratings_results_exports_and_access(web: WebClient) -> None:
    web.login("alice", "alice-password")
    assert 'enctype="multipart/form-data"' in web.get("/studies/import").text
    response = _upload(web, "Paper study", RATINGS_CSV, follow_redirects=False)
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    study_id = int(re.fullmatch(r"/studies/(\d+)/results", url).group(1))

    # An imported study has no pre-registration: the default leaves "uncertain" out.
    expected = study_statistics(parse_ratings_csv(RATINGS_CSV).ratings)
    assert expected["policy"] == "excluded" and expected["alternative"] == "two-sided"
    page = web.get(url).text
    assert "Policy in use: &#39;uncertain&#39; left out" in page
    for reader in expected["readers"]:
        cells = _reader_cells(page, reader["reader"])
        for column in ("n", "correct", "accuracy", "p_binomial", "p_holm", "p_tost", "auc",
                       "n_decisive", "uncertain_share", "p_answer_depends_on_truth"):  # fmt: skip
            assert _as_number(cells[column]) == reader[column], (reader["reader"], column)
        assert cells["below_chance"] == ("true" if reader["below_chance"] else "false")
    assert "p binomial (two-sided)" in page and "p one-sided" not in page
    assert f'data-uncertain-share="{expected["uncertain"]["share"]}"' in page
    assert expected["pooled"]["method"].startswith("two-way crossed random effects")
    for name, source in expected["by_source"].items():
        row = re.search(rf'<tr data-source="{name}">(.*?)</tr>', page, re.S).group(1)
        assert f'data-low="{source["ci_low"]}"' in row and f'data-high="{source["ci_high"]}"' in row
    # Three readers with 6-8 decisive answers each: no reader's TOST has power.
    assert 'data-enough="false"' in page and 'data-reader-power="R1" data-value="0.0"' in page
    pooled = expected["pooled"]
    assert f'data-pooled-accuracy="{pooled["accuracy"]}"' in page
    assert f'data-pooled-low="{pooled["ci_low"]}"' in page
    assert pooled["method"] in page
    assert f'data-fleiss="{expected["fleiss_kappa"]}"' in page
    assert "<svg" in page and "accuracy (proportion of answers correct)" in page
    assert 'hx-trigger="keyup changed delay:300ms"' in page
    assert 'href="/static/css/results.css"' in page

    stats = web.get(f"/studies/{study_id}/stats.json").json()
    assert stats.pop("study") == {"id": study_id, "name": "Paper study", "kind": "imported"}
    # The MRMC section comes from app.domain.mrmc_design (tests/unit/test_mrmc.py).
    assert set(stats.pop("mrmc")) >= {"available"}
    assert stats == expected

    # Counting "uncertain" as wrong: R2 keeps both uncertain answers in n (but not in the
    # TOST), and the page says it is not the pre-registered policy.
    wrong = web.get(f"{url}?uncertain=wrong").text
    assert _reader_cells(wrong, "R2")["n"] == "8" and _reader_cells(page, "R2")["n"] == "6"
    assert _reader_cells(wrong, "R2")["p_tost"] == _reader_cells(page, "R2")["p_tost"]
    assert "sensitivity analysis" in wrong
    as_json = web.get(f"/studies/{study_id}/stats.json?uncertain=wrong").json()
    assert as_json["readers"][1]["n"] == 8 and as_json["policy"] == "wrong"

    fragment = web.get(f"{url}/reasons", params={"q": "BLURRY"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'id="reasons-list"' in fragment.text
    assert fragment.text.count("blurry edges") == 3 and "calc" not in fragment.text
    assert "<html" not in fragment.text

    exported = web.get(f"/studies/{study_id}/export.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    assert len(rows) == _count(ExternalRating) == 24
    assert {r["reason"] for r in rows} == {"", "blurry edges", "'=cmd|' /C calc'!A0"}
    imrmc = web.get(f"/studies/{study_id}/export.imrmc").text
    lines = imrmc.splitlines()
    assert lines[1:5] == ["NR: 3", "N0: 4", "N1: 4", "NM: 1"]
    assert len(lines) - lines.index("BEGIN DATA:") - 1 == 8 + 24

    # Another researcher cannot tell the study exists; a reader is not a researcher.
    web.login("bob", "bob-password")
    base = f"/studies/{study_id}"
    for path in (url, f"{url}/reasons", f"{base}/export.csv", f"{base}/export.imrmc",
                 f"{base}/stats.json"):  # fmt: skip
        assert web.get(path).status_code == 404, path
    web.login("rita", "rita-password")
    assert web.get(url).status_code == 403
    assert web.get(f"/studies/{study_id}/export.csv").status_code == 403
    assert web.get("/studies/import").status_code == 403


def test_bad_csv_is_rejected_with_every_problem_and_nothing_stored(web: WebClient) -> None:
    web.login("alice", "alice-password")
    bad = (
        "reader,image,truth,answer,confidence\n"
        "R1,a,real,real,1\n"
        "R1,b,fake,maybe,1\n"
        ",c,real,real,1\n"
        "R1,d,real,fake,lots\n"
    )
    response = _upload(web, "Broken", bad)
    assert response.status_code == 422
    for problem in ("Row 3: unknown answer", "Row 4: empty reader", "Row 5: confidence"):
        assert problem in response.text
    assert "Nothing was imported" in response.text
    no_name = _upload(web, "  ", RATINGS_CSV)
    assert no_name.status_code == 422 and "The study needs a name." in no_name.text
    conflicting = _upload(web, "x", "reader,image,truth,answer\nR1,a,real,real\nR2,a,fake,real\n")
    assert conflicting.status_code == 422 and "marked real on some rows" in conflicting.text
    assert _count(Study) == 0 and _count(ExternalRating) == 0


def _reading_study(owner: str) -> tuple[int, dict[str, int]]:
    """Two readers; R01 sees a practice image, three scored images and one repeat."""
    with session_scope() as db:
        owner_id = db.scalar(select(User.id).where(User.username == owner))
        image_set = ImageSet(name="chest set", owner_id=owner_id)
        db.add(image_set)
        db.flush()
        images = {}
        for name, origin, source in (("p", Origin.real, None), ("a", Origin.real, None),
                                     ("b", Origin.synthetic, "gan-7"),
                                     ("c", Origin.synthetic, "gan-7")):  # fmt: skip
            image = Image(image_set_id=image_set.id, key=f"key-{name}", origin=origin,
                          label="normal", source=source, original_name=f"{name}.png",
                          sha256=hashlib.sha256(name.encode()).hexdigest(),
                          source_format="png", width=8, height=8)  # fmt: skip
            db.add(image)
            images[name] = image
        study = Study(name="Reading", owner_id=owner_id, design={"reading": {"margin": 0.15}})
        db.add(study)
        db.flush()
        items = {n: StudyItem(study_id=study.id, image_id=i.id, practice=n == "p")
                 for n, i in images.items()}  # fmt: skip
        db.add_all(items.values())
        r01 = StudyReader(study_id=study.id, user_id=owner_id, pseudonym="R01")
        db.add(r01)
        db.flush()
        schedule = [("p", True, False, "real", 900), ("a", False, False, "real", 2500),
                    ("b", False, False, "real", 4000), ("c", False, False, "fake", 61000),
                    ("b", False, True, "fake", 3000)]  # fmt: skip
        for position, (name, practice, repeat, answer, ms) in enumerate(schedule):
            entry = ScheduleEntry(study_reader_id=r01.id, position=position,
                                  study_item_id=items[name].id, practice=practice,
                                  repeat=repeat, opaque_id=f"op-{position}")  # fmt: skip
            db.add(entry)
            db.flush()
            db.add(Answer(schedule_entry_id=entry.id, study_reader_id=r01.id, answer=answer,
                          confidence=3.0, reason="too smooth" if answer == "fake" else None,
                          duration_ms=ms))  # fmt: skip
        return study.id, {n: item.id for n, item in items.items()} | {
            "set": image_set.id,
            "b_image": images["b"].id,
        }


def test_reading_study_ratings_skip_practice_and_mark_repeats(web: WebClient) -> None:
    study_id, ids = _reading_study("alice")
    with session_scope() as db:
        study = db.get(Study, study_id)
        ratings = study_ratings(db, study)
        rows = answer_rows(db, study)
    assert [(r.reader, r.image, r.truth, r.answer, r.source, r.repeat) for r in ratings] == [
        ("R01", f"img{ids['a']}", "real", "real", None, False),
        ("R01", f"img{ids['b']}", "fake", "real", "gan-7", False),
        ("R01", f"img{ids['c']}", "fake", "fake", "gan-7", False),
        ("R01", f"img{ids['b']}", "fake", "fake", "gan-7", True),
    ]
    assert len(rows) == _count(Answer) == 5
    assert [r["practice"] for r in rows] == [True, False, False, False, False]
    assert rows[1]["source_set"] == "chest set" and rows[1]["position"] == 1
    assert all("key-" not in str(v) for r in rows for v in r.values())

    web.login("alice", "alice-password")
    page = web.get(f"/studies/{study_id}/results")
    assert page.status_code == 200
    # The synthetic image R01 called real leads the gallery, with a researcher-only thumbnail.
    assert f'src="/imagesets/{ids["set"]}/images/{ids["b_image"]}"' in page.text
    assert page.text.index(f'data-image="img{ids["b"]}"') < page.text.index(
        f'data-image="img{ids["c"]}"'
    )
    assert "answer time (seconds" in page.text and "equivalence margin 0.35-0.65" in page.text
    assert _reader_cells(page.text, "R01")["n"] == "3"
    exported = web.get(f"/studies/{study_id}/export.csv").text
    assert len(list(csv.DictReader(io.StringIO(exported, newline="")))) == 5
    imrmc = web.get(f"/studies/{study_id}/export-imrmc.csv").text.splitlines()
    assert imrmc[imrmc.index("BEGIN DATA:") + 1 :] == [
        "-1,1,0,0", "-1,2,0,1", "-1,3,0,1", "1,1,A,-3", "1,2,A,-3", "1,3,A,3",
    ]  # fmt: skip
    stats = web.get(f"/studies/{study_id}/stats.json").json()
    assert stats["margin"] == 0.15 and stats["readers"][0]["n_repeats"] == 1
    assert json.dumps(stats)  # plain JSON all the way down


def test_preregistered_one_sided_test_is_shown_beside_the_two_sided(web: WebClient) -> None:
    study_id, _ = _reading_study("alice")
    with session_scope() as db:
        study = db.get(Study, study_id)
        reading = {"margin": 0.15, "binomial_alternative": "greater", "uncertain_policy": "wrong"}
        study.design = {"reading": reading}
    web.login("alice", "alice-password")
    page = web.get(f"/studies/{study_id}/results").text
    assert "p one-sided (pre-registered)" in page and "This is the study" in page
    cells = _reader_cells(page, "R01")
    # R01: 2 of 3 correct; two-sided 1.0, one-sided P(X >= 2 | 3, 0.5) = 0.5.
    assert float(cells["p_binomial"]) == 1.0 and float(cells["p_binomial_greater"]) == 0.5
    stats = web.get(f"/studies/{study_id}/stats.json").json()
    assert stats["alternative"] == "greater" and stats["policy"] == "wrong"
    assert stats["readers"][0]["p_holm_greater"] == 0.5


def test_page_builders_without_a_database() -> None:
    times = answer_time_histogram(
        [800, 1200, 1900, 2100, 2600, 3100, 3900, 4400, None] * 3 + [600_000]
    )
    assert times is not None and times.n == 25 and sum(b.count for b in times.bins) == 25
    assert times.bins[-1].label.startswith(">") and times.bins[-1].count == 1  # the coffee break
    assert times.bin_width_s in (0.25, 0.5, 1) and times.median_s == 2.6
    assert answer_time_histogram([None]) is None

    reasons = reasons_from(
        [
            {"reader": "R1", "image": "img1", "truth": "fake", "answer": "fake",
             "reason": "Blurry ribs", "practice": False},
            {"reader": "R2", "image": "img2", "truth": "fake", "answer": "fake",
             "reason": "ribs too smooth", "practice": False},
            {"reader": "R2", "image": "img3", "truth": "real", "answer": "fake",
             "reason": "blurry", "practice": True},
            {"reader": "R3", "image": "img4", "truth": "real", "answer": "real",
             "reason": None, "practice": False},
        ]
    )  # fmt: skip
    assert [r.image for r in filter_reasons(reasons, "RIBS")] == ["img1", "img2"]
    assert [r.image for r in filter_reasons(reasons, "ribs r2")] == ["img2"]
    assert len(filter_reasons(reasons, "  ")) == 2

    plot = forest_plot([("R1", 10, 0.5, 0.2, 0.8, False)], title="t", x_label="x", margin=0.1)
    row = plot.rows[0]
    assert row.x == plot.chance_x == (plot.left + plot.right) / 2
    assert plot.band[1] - plot.chance_x == pytest.approx(plot.chance_x - plot.band[0])
    assert row.x_low < row.x < row.x_high
