"""Sweep grids without a database: form -> spec -> points -> steps, and what may start next."""

from __future__ import annotations

import pytest

from app.jobs.specs import SpecError
from app.sweeps.grid import (
    MAX_POINTS,
    DatasetFacts,
    SweepSpec,
    all_steps,
    facts_of,
    next_stages,
    parse_spec,
    plan,
    point_status,
    points,
)
from app.sweeps.views import JobFacts, live, point_rows

FACTS = DatasetFacts(resolutions=(32, 64), n_classes=3)
FORM = {
    "name": "Seed 000",
    "kind": "grid",
    "resolutions": "32, 64",
    "classes": "2, 3",
    "per_class": "5, 0",
    "gan_preset": "tiny-cpu",
    "kimg": "0.064",
    "tick_kimg": "0.032",
    "draw": "6",
    "classifier_preset": "tiny-cpu",
    "epochs": "2",
    "queue": "cpu",
}


def _spec(**changes: str) -> SweepSpec:
    return parse_spec({**FORM, **changes}, FACTS)


def _error(**changes: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        _spec(**changes)
    return caught.value


def test_grid_expands_to_every_combination_and_all_means_no_subset() -> None:
    spec = _spec()
    assert spec.resolutions == (32, 64) and spec.classes == (2, 3) and spec.per_class == (5, 0)
    found = points(spec)
    assert len(found) == 8
    assert {(p.resolution, p.classes, p.per_class) for p in found} == {
        (r, k, s) for r in (32, 64) for k in (2, None) for s in (None, 5)
    }
    assert spec.gan == {"kimg": "0.064", "tick_kimg": "0.032"} and spec.epochs == 2
    assert SweepSpec.from_json(spec.as_json()) == spec


def test_empty_axes_mean_everything_and_all_is_accepted() -> None:
    spec = _spec(classes="", per_class="")
    assert spec.classes == (3,) and spec.per_class == (0,)
    assert _spec(classes="all", per_class="all, 10").per_class == (10, 0)
    assert [(p.classes, p.per_class) for p in points(_spec(classes="0", per_class="0"))] == [
        (None, None),
        (None, None),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"resolutions": "48"}, "resolutions", "stored at 32, 64 px, not 48"),
        ({"resolutions": ""}, "resolutions", "at least one resolution"),
        ({"resolutions": "32, x"}, "resolutions", "'x' is not a whole number"),
        ({"classes": "1"}, "classes", "from 2 to 3"),
        ({"classes": "4"}, "classes", "from 2 to 3"),
        ({"per_class": "-1"}, "per_class", "or 0 (all)"),
        ({"name": "  "}, "name", "Name the sweep"),
        ({"kind": "random"}, "kind", "grid, gan_param"),
        ({"gan_preset": "huge"}, "gan_preset", "tiny-cpu"),
        ({"kimg": "-1"}, "kimg", "between"),
        ({"classifier_preset": "x"}, "classifier_preset", "tiny-cpu"),
        ({"epochs": "0"}, "epochs", "from 1 to 1000"),
        ({"draw": "0"}, "draw", "from 1 to"),
        ({"queue": "tpu"}, "queue", "cpu, gpu"),
    ],
)
def test_bad_input_names_its_field(changes: dict[str, str], field: str, words: str) -> None:
    error = _error(**changes)
    assert error.field == field and words in error.message


def test_resolution_must_suit_a_gan() -> None:
    error = parse_spec_error({**FORM, "resolutions": "24"}, DatasetFacts((24,), 3))
    assert error.field == "resolutions" and "powers of two" in error.message


def parse_spec_error(values: dict[str, str], facts: DatasetFacts) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(values, facts)
    return caught.value


def test_too_many_points_is_refused() -> None:
    many = ", ".join(str(i) for i in range(1, 26))  # 2 x 1 x 25 = 50 points
    error = _error(classes="3", per_class=many)
    assert error.field == "grid" and f"50 points; at most {MAX_POINTS}" in error.message
    assert len(points(_spec(classes="3", per_class=", ".join(str(i) for i in range(1, 25))))) == 48


def test_a_dataset_with_one_class_cannot_be_swept() -> None:
    error = parse_spec_error({**FORM, "resolutions": "32"}, DatasetFacts((32,), 1))
    assert error.field == "classes"


def test_gan_param_sweep_checks_each_value() -> None:
    form = {**FORM, "kind": "gan_param", "resolutions": "32", "param": "kimg"}
    spec = parse_spec({**form, "values": "0.032, 0.064, 0.032"}, FACTS)
    assert spec.values == ("0.032", "0.064") and spec.classes == () and spec.per_class == ()
    assert [(p.key, p.value) for p in points(spec)] == [("p0", "0.032"), ("p1", "0.064")]
    error = parse_spec_error({**form, "values": "0.5, lots"}, FACTS)
    assert error.field == "values" and "kimg = lots" in error.message
    assert parse_spec_error({**form, "values": ""}, FACTS).field == "values"
    assert parse_spec_error({**form, "param": "device", "values": "cpu"}, FACTS).field == "param"
    two = parse_spec_error({**form, "resolutions": "32, 64", "values": "1"}, FACTS)
    assert two.field == "resolutions" and "one resolution" in two.message
    arch = parse_spec_error({**form, "param": "arch", "values": "dcgan, nope"}, FACTS)
    assert arch.field == "values" and "arch = nope: Unknown architecture" in arch.message


def test_facts_come_from_the_dataset_info() -> None:
    info = {"resolutions": [64, 32], "label_names": ["normal", "pneumonia"]}
    assert facts_of(info) == DatasetFacts((32, 64), 2)


def test_plans_skip_subsets_that_ask_for_everything_and_share_the_class_subset() -> None:
    spec = _spec(resolutions="32")
    plans = {p.point.key: p for p in (plan(x) for x in points(spec))}
    full = plans["r32-kall-sall"]
    assert [s.stage for s in full.steps] == ["gan", "sample", "real", "synthetic"]
    assert full.steps[0].after is None and full.steps[0].data is None
    capped = plans["r32-k2-s5"]
    assert [s.stage for s in capped.steps] == [
        "classes",
        "per_class",
        "gan",
        "sample",
        "real",
        "synthetic",
    ]
    classes, per_class, gan, sample, real, synthetic = capped.steps
    assert per_class.after == classes.key and gan.after == per_class.key == real.after
    assert sample.after == gan.key and synthetic.after == sample.key
    # The class subset of (32 px, 2 classes) serves both samples-per-class values.
    assert plans["r32-k2-sall"].steps[0].key == classes.key
    steps = all_steps(plans.values())
    # One shared class subset, then 5 or 4 steps per point (a per-class subset or none).
    assert len(steps) == len({s.key for s in steps}) == 1 + 5 + 4 + 5 + 4


def test_gan_param_points_share_one_real_classifier() -> None:
    form = {**FORM, "kind": "gan_param", "resolutions": "32", "param": "seed", "values": "0,1,2"}
    spec = parse_spec(form, FACTS)
    steps = all_steps(plan(p) for p in points(spec))
    assert sorted(s.stage for s in steps).count("real") == 1
    assert len(steps) == 3 * 3 + 1


def test_next_stages_follow_successes_only() -> None:
    spec = _spec(resolutions="32", classes="2", per_class="5")
    steps = plan(points(spec)[0]).steps
    keys = {s.stage: s.key for s in steps}
    assert [s.stage for s in next_stages(steps, {})] == ["classes"]
    assert next_stages(steps, {keys["classes"]: "running"}) == []
    done = {keys["classes"]: "succeeded"}
    assert [s.stage for s in next_stages(steps, done)] == ["per_class"]
    done[keys["per_class"]] = "succeeded"
    assert [s.stage for s in next_stages(steps, done)] == ["gan", "real"]
    done |= {keys["gan"]: "succeeded", keys["real"]: "queued"}
    assert [s.stage for s in next_stages(steps, done)] == ["sample"]
    # A failed or cancelled stage stops the point: nothing after it ever starts.
    assert next_stages(steps, {**done, keys["sample"]: "failed"}) == []
    assert next_stages(steps, {**done, keys["sample"]: "cancelled"}) == []
    done[keys["sample"]] = "succeeded"
    assert [s.stage for s in next_stages(steps, done)] == ["synthetic"]
    # Created already (a redelivered job asks again): nothing new.
    assert next_stages(steps, {**done, keys["synthetic"]: "queued"}) == []


def test_point_status() -> None:
    steps = plan(points(_spec(resolutions="32", classes="3", per_class="0"))[0]).steps
    keys = [s.key for s in steps]
    assert point_status(steps, {}, {}) == "queued"
    assert point_status(steps, {keys[0]: "running"}, {}) == "running"
    assert point_status(steps, {keys[0]: "failed", keys[2]: "running"}, {}) == "failed"
    assert point_status(steps, {keys[0]: "cancelled"}, {}) == "cancelled"
    assert point_status(steps, {keys[0]: "succeeded"}, {keys[1]: "no checkpoint"}) == "stopped"
    assert point_status(steps, dict.fromkeys(keys, "succeeded"), {}) == "done"


def test_point_rows_show_stages_numbers_and_problems() -> None:
    spec = _spec(resolutions="32", classes="3", per_class="5, 0")
    plans = {p.point.key: p for p in (plan(x) for x in points(spec))}
    capped = {s.stage: s.key for s in plans["r32-kall-s5"].steps}
    full = {s.stage: s.key for s in plans["r32-kall-sall"].steps}
    jobs = {
        capped["per_class"]: JobFacts(1, "succeeded"),
        capped["gan"]: JobFacts(2, "succeeded", {"best_fid": 41.5}),
        capped["sample"]: JobFacts(3, "succeeded", {"image_set_id": 9}),
        capped["real"]: JobFacts(4, "succeeded", {"macro_auc": 0.81}),
        capped["synthetic"]: JobFacts(5, "succeeded", {"macro_auc": 0.7}),
        full["gan"]: JobFacts(6, "failed"),
        full["real"]: JobFacts(7, "running"),
    }
    rows = {r.point.key: r for r in point_rows(spec, jobs, {})}
    done = rows["r32-kall-s5"]
    assert done.status == "done" and done.label == "32 px · all 3 classes · 5 per class"
    assert (done.auc_real, done.auc_synthetic, done.fid) == (0.81, 0.7, 41.5)
    assert done.cells[0] is None  # no class subset: all classes
    assert [c.job_id for c in done.cells[1:] if c] == [1, 2, 3, 4, 5]
    failed = rows["r32-kall-sall"]
    assert failed.status == "failed" and failed.auc_real is None and failed.fid is None
    sample_cell = failed.cells[3]
    assert sample_cell is not None and sample_cell.status == "not started"
    assert live(rows.values(), jobs)  # the real classifier still runs
    assert not live([done], {capped["gan"]: jobs[capped["gan"]]})
    problem = point_rows(spec, {}, {capped["per_class"]: "The dataset is not ready yet."})
    cell = next(r for r in problem if r.point.key == "r32-kall-s5").cells[1]
    assert cell is not None and cell.problem == "The dataset is not ready yet."
