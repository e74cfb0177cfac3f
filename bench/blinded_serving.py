"""What blinded serving costs: bytes per image and image response time, against serving the
stored file as-is, in the same run, through the same app and middleware.

Builds the issue's mixed study in a temporary home (real chest X-rays as JPEG, 16-bit PNG
and DICOM at 256-1024 px, not square; synthetic 96 px squares), creates it through the
studies service (which renders every image and runs the leakage gate: timed), then requests
every scored presentation's image as a signed-in reader, interleaved with a request for the
same image's stored blinded file (what readers were served before) through a route added to
the same app instance. Prints medians and the ratios.

    .venv/bin/python bench/blinded_serving.py
    .venv/bin/python bench/blinded_serving.py --rounds 5 --size 384
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over every image")
    parser.add_argument("--size", type=int, default=512, help="study display size, px")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthbench-bench-") as home:
        os.environ.update(
            SYNTHBENCH_HOME=home,
            SYNTHBENCH_DATABASE_URL=f"sqlite:///{home}/bench.sqlite",
            SYNTHBENCH_BROKER_URL=f"sqla+sqlite:///{home}/broker.sqlite",
            SYNTHBENCH_SECRET_KEY="bench-secret-key-not-for-production-0123456789",
        )
        sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
        run(args.rounds, args.size)


def run(rounds: int, size: int) -> None:
    from fastapi.responses import Response
    from fastapi.testclient import TestClient
    from sqlalchemy import select
    from study_fixtures import mixed_source_image_sets

    from app.auth.service import create_user, start_session
    from app.auth.tokens import sign
    from app.db import session_scope
    from app.deps import SESSION_COOKIE
    from app.domain.reader_study import StudyDesign
    from app.imagesets.storage import blinded_path
    from app.main import create_app
    from app.migrate import upgrade
    from app.models import Image, Role, ScheduleEntry, StudyItem, StudyReader
    from app.reading import service as reading
    from app.studies.design import DisplayOptions, ReadingOptions
    from app.studies.service import assign_reader, create_study

    upgrade()
    with session_scope() as db:
        owner = create_user(db, username="owner", password=None, role=Role.researcher)
        owner_id = owner.id
    set_ids = mixed_source_image_sets(owner_id)
    design = StudyDesign(n_images=24, synthetic_share=0.5, repeat_share=0.25, seed=1)
    with session_scope() as db:
        started = time.perf_counter()
        study = create_study(
            db, owner=db.get(type(owner), owner_id), name="bench", instructions="",  # type: ignore[arg-type]
            image_set_ids=set_ids, design=design, reading=ReadingOptions(),
            display_options=DisplayOptions(size=size),
        )  # fmt: skip
        create_s = time.perf_counter() - started
        n_images = design.n_images
        gate = study.leakage_audit
        reader = create_user(db, username="reader", password=None, role=Role.reader)
        assign_reader(db, study, reader.id)
        study_id, reader_id = study.id, reader.id
    with session_scope() as db:
        study_row, study_reader = reading.reader_for(
            db, study_id=study_id, user_id=reader_id, study_scope=None
        )
        reading.ensure_schedule(db, study_row, study_reader)
        token, _ = start_session(db, db.get(type(owner), reader_id), hours=1)  # type: ignore[arg-type]
    with session_scope() as db:
        pairs = db.execute(
            select(ScheduleEntry.opaque_id, Image.key)
            .join(StudyItem, StudyItem.id == ScheduleEntry.study_item_id)
            .join(Image, Image.id == StudyItem.image_id)
            .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
            .where(StudyReader.user_id == reader_id)
        ).all()

    app = create_app()

    # The old serving path, for the baseline: the stored blinded file's bytes as they are.
    @app.get("/bench/as-is/{key}")
    def as_is(key: str) -> Response:
        return Response(
            blinded_path(key).read_bytes(),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=600"},
        )

    client = TestClient(app, base_url="http://testserver")
    client.cookies.set(SESSION_COOKIE, sign(app.state.secret_key, "session", token))
    blinded_ms: list[float] = []
    as_is_ms: list[float] = []
    blinded_bytes: set[int] = set()
    as_is_bytes: list[int] = []
    for _ in range(rounds):
        for opaque, key in pairs:
            for url, times, sizes in (
                (f"/read/{study_id}/image/{opaque}", blinded_ms, None),
                (f"/bench/as-is/{key}", as_is_ms, as_is_bytes),
            ):
                t = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200, (url, response.status_code)
                if sizes is None:
                    blinded_bytes.add(len(response.content))
                else:
                    sizes.append(len(response.content))
    client.close()

    b_ms, a_ms = statistics.median(blinded_ms), statistics.median(as_is_ms)
    a_kb = statistics.mean(as_is_bytes) / 1024
    (b_len,) = blinded_bytes  # one length for every image: the point of it
    print(f"mixed study: {n_images} images, {len(pairs)} presentations x {rounds} rounds")
    print(f"study creation (render every image + leakage gate): {create_s:.2f} s")
    print(f"gate passed: {gate['passed']}; channels: " + ", ".join(
        f"{c['channel']} {c['auc']:.3f}/{c['null_p95']:.3f}" for c in gate["channels"]
    ))  # fmt: skip
    print(
        f"bytes per image: blinded {b_len / 1024:.1f} KiB (every image), as-is mean "
        f"{a_kb:.1f} KiB (min {min(as_is_bytes) / 1024:.1f}, max {max(as_is_bytes) / 1024:.1f})"
        f"; ratio {b_len / 1024 / a_kb:.2f}x"
    )
    print(
        f"image response, median: blinded {b_ms:.2f} ms, as-is {a_ms:.2f} ms; "
        f"ratio {b_ms / a_ms:.2f}x (p90 {_p90(blinded_ms):.2f} vs {_p90(as_is_ms):.2f} ms)"
    )


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


if __name__ == "__main__":
    main()
