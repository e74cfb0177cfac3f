"""``synthbench study import-ratings`` and ``study stats`` in real subprocesses on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from support import Env, run_cli

from app.domain.ratings_import import parse_ratings_csv
from app.domain.statistics import study_statistics

RATINGS = """reader,image,truth,answer,confidence
R1,a,real,real,4
R1,b,real,fake,2
R1,c,fake,fake,5
R1,d,fake,uncertain,1
R2,a,real,uncertain,3
R2,b,real,real,4
R2,c,fake,real,2
R2,d,fake,fake,5
R3,a,real,real,5
R3,b,real,real,3
R3,c,fake,fake,4
R3,d,fake,real,2
"""


def test_import_then_stats_as_json(tmp_path: Path) -> None:
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'cli.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    assert run_cli(env, "db", "upgrade").returncode == 0
    created = run_cli(env, "user", "create", "root", "--role", "admin", "--password", "root-pw-123")
    assert created.returncode == 0, created.stderr
    ratings_file = tmp_path / "ratings.csv"
    ratings_file.write_text(RATINGS)

    imported = run_cli(env, "study", "import-ratings", str(ratings_file), "--name", "Paper study")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().isdigit() and imported.stdout == imported.stdout.strip() + "\n"
    study_id = imported.stdout.strip()

    shown = run_cli(env, "study", "stats", study_id, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data.pop("study") == {"id": int(study_id), "name": "Paper study", "kind": "imported"}
    assert data.pop("mrmc")["design"] == "real-vs-synthetic"
    # No pre-registration for an imported study: "uncertain" is left out by default.
    assert data == study_statistics(parse_ratings_csv(RATINGS).ratings, policy="excluded")
    first = data["readers"][0]
    assert {"reader", "n", "correct", "accuracy", "wilson_low", "wilson_high", "p_binomial",
            "p_holm", "p_tost", "n_uncertain"} <= first.keys()  # fmt: skip
    assert {"accuracy", "ci_low", "ci_high"} <= data["pooled"].keys() and "fleiss_kappa" in data

    wrong = run_cli(env, "study", "stats", study_id, "--json", "--uncertain", "wrong")
    assert wrong.returncode == 0, wrong.stderr
    assert [r["n"] for r in json.loads(wrong.stdout)["readers"]] == [4, 4, 4]
    assert [r["n"] for r in data["readers"]] == [3, 3, 4]

    missing = run_cli(env, "study", "stats", "999", "--json")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "There is no study 999." in missing.stderr

    bad_file = tmp_path / "bad.csv"
    bad_file.write_text("reader,image,truth,answer\nR1,a,real,perhaps\n,b,fake,real\n")
    bad = run_cli(env, "study", "import-ratings", str(bad_file), "--name", "Bad")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "Row 2: unknown answer 'perhaps'" in bad.stderr and "Row 3: empty reader" in bad.stderr


def test_stats_summary_labels_the_two_sided_test_and_shows_below_chance_and_uncertain(
    tmp_path: Path,
) -> None:
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'cli.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    assert run_cli(env, "db", "upgrade").returncode == 0
    created = run_cli(env, "user", "create", "root", "--role", "admin", "--password", "root-pw-123")
    assert created.returncode == 0, created.stderr
    ratings_file = tmp_path / "ratings.csv"
    ratings_file.write_text(RATINGS)
    imported = run_cli(env, "study", "import-ratings", str(ratings_file), "--name", "Paper study")
    assert imported.returncode == 0, imported.stderr
    shown = run_cli(env, "study", "stats", imported.stdout.strip(), "--uncertain", "wrong")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for column in ("p (two-sided)", "below chance", "n uncertain", "uncertain share"):
        assert column in out, out
    assert "p binomial" not in out
    rows = {line.split()[1]: line for line in out.splitlines() if line[:3] in ("│ R", "| R")}
    # R1: 2 of 4 right under "wrong" (its uncertain counts as wrong), 1 uncertain in 4 answers.
    stats = study_statistics(parse_ratings_csv(RATINGS).ratings, policy="wrong")
    r1 = next(r for r in stats["readers"] if r["reader"] == "R1")
    cells = [c.strip() for c in rows["R1"].strip("│| ").split("│")]
    assert cells[5] == f"{r1['p_binomial']:.4f}" and cells[7] == "no"
    assert cells[9] == "1" and cells[10] == "0.250"
