"""Every job type of the application, gathered from the features that declare them.

The composition root of `app.jobs.registry`: the jobs package and the worker read this list
(loaded on first use) and know no job type by name. Adding a job type: declare a `JobKind` in
its feature's `job_types` module and list that module here if it is new. The order is the
order forms and filters show the types in.
"""

from __future__ import annotations

from app.datasets import job_types as datasets
from app.demo import job_types as demo
from app.evaluation import job_types as evaluation
from app.gans import job_types as gans
from app.jobs import image_stats
from app.jobs.registry import Catalog
from app.sweeps import job_types as sweeps

CATALOG = Catalog(
    kinds=(*image_stats.KINDS, *datasets.KINDS, *gans.KINDS, *evaluation.KINDS),
    after_any_success=(*sweeps.AFTER_ANY_SUCCESS, *demo.AFTER_ANY_SUCCESS),
)
