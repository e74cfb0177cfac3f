"""Screenshot of the demo's digits benchmark dashboard, at the demo's own GAN length.

    .venv/bin/python tests/demo_digits_screenshot.py [--kimg 12]

Builds a throw-away installation (SQLite, embedded broker) in a temporary folder, loads the
demo, runs the digits benchmark's jobs through the real job runner (the X-ray steps stay
queued), serves the app, signs in as the demo researcher with headless Debian Chromium and
writes tests/artifacts/demo-digits-dashboard.png. Prints each classifier's AUC and 95% DeLong
interval and whether the interval excludes 0.5, so the screenshot can be checked against it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from support import Env, point_celery_at, start_server  # noqa: E402

ARTIFACT = HERE / "artifacts" / "demo-digits-dashboard.png"


def _activate(env: Env, kimg: str) -> None:
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    os.environ.update({k: v for k, v in env.environ().items() if k.startswith("SYNTHBENCH_")})
    os.environ["SYNTHBENCH_DEMO_GAN_KIMG"] = kimg
    os.environ["SYNTHBENCH_ENERGY_TRACKING"] = "false"
    get_settings.cache_clear()
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    point_celery_at(env.broker_url)


def _run_digits(researcher_id: int, digits_id: int) -> None:
    """Run the digits benchmark's queued jobs one at a time, as the embedded worker would."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Job, JobStatus
    from workers.runner import execute

    for _ in range(40):
        with session_scope() as db:
            jobs = list(db.scalars(select(Job).where(Job.owner_id == researcher_id)))
            gans = {j.id for j in jobs if j.params.get("dataset_id") == digits_id}
            queued = [
                j.id
                for j in sorted(jobs, key=lambda j: j.id)
                if j.status is JobStatus.queued
                and j.sweep_id is None
                and (
                    j.params.get("dataset_id") == digits_id or j.params.get("train_job_id") in gans
                )
            ]
        if not queued:
            return
        print(f"running job {queued[0]}", flush=True)
        execute(queued[0], worker="screenshot")
    raise SystemExit("the digits benchmark did not settle")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kimg", default="12")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="synthbench-digits-"))
    env = Env(
        home, f"sqlite:///{home / 'synthbench.sqlite'}", f"sqla+sqlite:///{home / 'b.sqlite'}"
    )
    _activate(env, args.kimg)
    from sqlalchemy import select

    from app.db import session_scope
    from app.demo.loader import load_demo
    from app.evaluation.dashboard import auc_interval
    from app.models import Job, JobStatus, User

    info = load_demo()
    with session_scope() as db:
        researcher_id = db.scalar(select(User.id).where(User.username == "researcher"))
    _run_digits(researcher_id, info["digits_dataset_id"])
    with session_scope() as db:
        for job in db.scalars(
            select(Job).where(Job.type == "train_classifier", Job.status == JobStatus.succeeded)
        ):
            if job.params.get("dataset_id") != info["digits_dataset_id"]:
                continue
            interval = auc_interval(job.artefact_dir)
            what = (
                f"[{interval[0]:.3f}, {interval[1]:.3f}] excludes 0.5: "
                f"{interval[0] > 0.5 or interval[1] < 0.5}"
                if interval
                else "no DeLong interval (variance 0: perfect separation)"
            )
            print(f"{job.params['train_on']:>9}-trained AUC {job.result['macro_auc']:.3f} {what}")
    server = start_server(env)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{server.url}/login")
            page.get_by_label("Username").fill("researcher")
            page.get_by_label("Password").fill("demo-researcher-pw")
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{server.url}/datasets/{info['digits_dataset_id']}/benchmark")
            page.wait_for_load_state("networkidle")
            ARTIFACT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=True)
            browser.close()
        print(f"wrote {ARTIFACT}")
    finally:
        server.process.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
