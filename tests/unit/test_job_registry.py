"""Every declared job type is complete: the worker has its handler and a Celery task, its hooks,
page views and templates exist, and the jobs package serves it without naming it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from app.jobs.registry import Catalog, JobKind, catalog, job_types, resolve
from app.jobs.specs import QUEUES, SpecError, job_spec
from app.web.templating import templates


def _references(kind: JobKind) -> list[str]:
    hooks = (
        kind.handler,
        kind.request,
        kind.on_finished,
        kind.before_success,
        kind.after_success,
        kind.clone_check,
        kind.preset_values,
    )
    return [ref for ref in (*hooks, *kind.page.views) if ref]


def test_every_job_type_has_a_worker_handler_and_a_celery_task() -> None:
    import workers.tasks  # noqa: F401  (registers one Celery task per declared job type)
    from app.jobs.service import task_name
    from app.queue import celery_app
    from workers.handlers import handler_for

    names = set(job_types())
    assert names, "the catalog declares job types"
    handled = {name for name in names if handler_for(name) is not None}
    tasks = {
        t.removeprefix("synthbench.job.")
        for t in celery_app.tasks
        if t.startswith("synthbench.job.")
    }
    assert handled == names == tasks
    for name in names:
        assert task_name(name) in celery_app.tasks
        params = list(inspect.signature(handler_for(name)).parameters)
        assert len(params) == 4, f"{name}: a handler takes (params, out, progress, should_stop)"
    assert handler_for("no-such-type") is None


@pytest.mark.parametrize("name", sorted(job_types()))
def test_declared_references_resolve(name: str) -> None:
    kind = job_types()[name]
    assert kind.name == name and kind.title and kind.default_queue in QUEUES
    for reference in _references(kind):
        assert callable(resolve(reference)), reference
    if kind.request:
        request = resolve(kind.request)
        assert dataclasses.is_dataclass(request), f"{kind.request} is a typed request"
    for template in (*kind.page.partials, *kind.page.footer):
        templates.env.get_template(template)  # raises TemplateNotFound
    assert job_spec(name, {}).queue == kind.default_queue


def test_what_follows_any_success_resolves() -> None:
    for reference in catalog().after_any_success:
        assert callable(resolve(reference)), reference


def test_specs_refuse_unknown_types_and_queues() -> None:
    with pytest.raises(SpecError) as unknown:
        job_spec("no-such-type", {})
    assert unknown.value.field == "type"
    name = next(iter(job_types()))
    with pytest.raises(SpecError) as queue:
        job_spec(name, {}, "tpu")
    assert queue.value.field == "queue"


def test_a_catalog_refuses_a_type_declared_twice() -> None:
    kind = JobKind("twice", "Twice", "cpu", handler="workers.handlers:image_stats")
    with pytest.raises(ValueError, match="twice"):
        Catalog(kinds=(kind, dataclasses.replace(kind, title="Again")))


def test_references_must_name_module_and_attribute() -> None:
    with pytest.raises(ValueError):
        resolve("workers.handlers.image_stats")
