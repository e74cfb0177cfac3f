"""Demo: the research workspace, queued once the demo GAN's samples exist.

A reader study made in one click from the tiny GAN's samples (with matched real X-rays), and
a small sweep of seed 000's samples-per-class axis that is only *queued* here: the demo's
embedded worker runs it after start-up, so a newcomer watches its jobs complete live on the
sweep page and its points appear on the dataset's benchmark dashboard.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from app.auth.service import Principal
from app.db import session_scope
from app.demo.state import demo_jobs
from app.domain.display_geometry import MAX_DISPLAY_SIZE, MIN_DISPLAY_SIZE
from app.models import Job, JobStatus, Study, Sweep, User, WebSession
from app.studies.design import DisplayOptions

DEMO_SWEEP = "Demo sweep: training images per class (2 vs all)"
# Below this side a chest film has lost the detail (rib cortex, vessels, the text marker)
# readers judge realism by: a reader study at this size tests nothing but blur.
CONVINCING_SIDE = 128
DEFAULT_SIDE = 32  # the tiny-cpu preset's


def native_display(resolution: int) -> DisplayOptions:
    """Show the GAN's images at their native size (the smallest the reading page allows),
    never enlarged to the default 512 px: enlarging only shows off the blur."""
    return DisplayOptions(size=max(MIN_DISPLAY_SIZE, min(resolution, MAX_DISPLAY_SIZE)))


def resolution_note(resolution: int, display_size: int) -> str:
    """What the study page tells readers when the GAN's images are too small to fool anyone."""
    if resolution >= CONVINCING_SIDE:
        return ""
    shown = "at that size" if display_size == resolution else f"at {display_size} px"
    return (
        f"Note: this demo GAN makes {resolution} px images, shown {shown}. Radiologists read "
        f"chest X-rays at thousands of pixels a side; below {CONVINCING_SIDE} px no image, real "
        "or synthetic, looks like a radiograph, so this study shows how reading works, not "
        "whether the GAN fools radiologists."
    )


def demo_workspace(researcher_id: int, dataset_id: int, gan_job_id: int | None) -> int | None:
    """Create (once) the study from samples and the sweep; returns the sweep id."""
    from app.studies import from_samples
    from app.sweeps.service import start_sweep

    with session_scope() as db:
        researcher = db.get(User, researcher_id)
        assert researcher is not None
        # The loader acts for the demo researcher: a full (not invitation) session, never stored.
        principal = Principal(user=researcher, session=WebSession(user_id=researcher.id))
        existing = db.scalar(select(Sweep.id).where(Sweep.name == DEMO_SWEEP))
        sample = next(
            (
                job
                for job in demo_jobs(db, researcher_id, "sample")
                if job.params.get("train_job_id") == gan_job_id
                and job.status is JobStatus.succeeded
            ),
            None,
        )
        if sample is None:
            # The sweep trains GANs too: it waits for the demo's own run and samples, so the
            # one embedded worker finishes what the dashboard needs first.
            return existing
        named = "Reader study: Demo synthetic"
        has_study = db.scalar(select(Study.id).where(Study.name.startswith(named)))
        if sample is not None and has_study is None:
            train = db.get(Job, gan_job_id)
            resolution = int(train.params["config"]["resolution"]) if train else DEFAULT_SIDE
            display = native_display(resolution)
            options = replace(from_samples.parse_study_options("", ""), display=display)
            made = from_samples.create_study_from_samples(
                db, job=sample, principal=principal, options=options
            )
            note = resolution_note(resolution, display.size)
            if note:
                made.study.instructions = f"{made.study.instructions}\n\n{note}"
            db.commit()
        if existing is not None:
            return existing
        sweep = start_sweep(
            db,
            principal,
            {
                "name": DEMO_SWEEP,
                "dataset": str(dataset_id),
                "kind": "grid",
                "resolutions": "32",
                "classes": "",
                "per_class": "2, 0",
                "gan_preset": "tiny-cpu",
                "kimg": "2",
                "tick_kimg": "0.5",
                "snapshot_ticks": "1",
                "draw": "8",
                "classifier_preset": "tiny-cpu",
                "queue": "cpu",
            },
        )
        return sweep.id
