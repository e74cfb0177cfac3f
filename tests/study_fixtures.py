"""A reader study as the app leaves it, built through the services: two image sets uploaded
through the ingest service (the synthetic ones as a generator writes them: other sizes, a PNG
text chunk, JPEG EXIF), a study from the studies service, readers who answered through the
reading service, one of them invited by link, one who never started."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import select

from app.auth.service import accept_invite, create_invite, create_user
from app.db import session_scope
from app.domain.answers import AnswerInput
from app.domain.reader_study import StudyDesign
from app.imagesets.service import create_image_set
from app.models import Image, Origin, Role, StudyItem, User
from app.reading import service as reading
from app.studies.design import ReadingOptions, SecondQuestion
from app.studies.service import assign_reader, create_study

DESIGN = StudyDesign(n_images=8, synthetic_share=0.5, repeat_share=0.25, practice_images=2, seed=11)
READING = ReadingOptions(
    confidence="1-5",
    reason_required=True,
    second_question=SecondQuestion("Is there consolidation?", ("yes", "no")),
)
TOTAL = 2 + 8 + 2  # practice + scored + repeats


@dataclass(frozen=True)
class BuiltStudy:
    study_id: int
    owner_id: int
    readers: dict[str, int]  # username -> user id


def _pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ramp = np.linspace(0, 180, width)[None, :] + np.linspace(0, 60, height)[:, None]
    return np.clip(ramp + rng.normal(0, 12, (height, width)), 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, kind: str) -> bytes:
    out = io.BytesIO()
    image = PILImage.fromarray(pixels, mode="L")
    if kind == "png-text":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "GeneratorX synthetic")
        image.save(out, format="PNG", pnginfo=info)
    elif kind == "jpeg-exif":
        exif = PILImage.Exif()
        exif[0x0131] = "GeneratorY synthetic sampler"
        image.convert("RGB").save(out, format="JPEG", quality=90, exif=exif.tobytes())
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def _upload(rows: list[tuple[str, bytes, str, str]]) -> io.BytesIO:
    """A zip of (name, bytes, origin, label) with a manifest.csv; synthetic images get their
    generator as group (Image.source)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        lines = ["file,source,label,group"]
        for name, data, origin, label in rows:
            zf.writestr(name, data)
            group = "" if origin == "real" else ("ganA-64k" if "gen" in name else "ganB-128k")
            lines.append(f"{name},{origin},{label},{group}")
        zf.writestr("manifest.csv", "\n".join(lines) + "\n")
    buffer.seek(0)
    return buffer


def _image_sets(owner_id: int) -> list[int]:
    rng = np.random.default_rng(5)
    real = [
        (f"patient{i:02d}.png", _encode(_pixels(rng, 64, 64), "png"), "real",
         "normal" if i % 2 else "pneumonia")
        for i in range(8)
    ]  # fmt: skip
    synthetic = [
        (f"gen_{i:03d}.png", _encode(_pixels(rng, 80, 96), "png-text"), "synthetic",
         "normal" if i % 2 else "pneumonia")
        for i in range(4)
    ] + [
        (f"sample_{i:03d}.jpeg", _encode(_pixels(rng, 48, 64), "jpeg-exif"), "synthetic",
         "normal" if i % 2 else "pneumonia")
        for i in range(4)
    ]  # fmt: skip
    ids = []
    for name, rows in (("Hospital X-rays", real), ("Generated X-rays", synthetic)):
        with session_scope() as db:
            image_set = create_image_set(
                db, owner_id=owner_id, name=name, default_origin=None,
                upload_path_or_file=_upload(rows), description=f"{name} for the test",
            )  # fmt: skip
            ids.append(image_set.id)
    return ids


def _answer(reader_index: int, position: int, synthetic: bool) -> AnswerInput:
    # Deterministic and varied: right, wrong and uncertain answers, every confidence.
    right = "fake" if synthetic else "real"
    wrong = "real" if synthetic else "fake"
    answer = [right, right, wrong, "uncertain"][(position + reader_index) % 4]
    return AnswerInput(
        answer=answer,
        confidence=str(1 + (position * 3 + reader_index) % 5),
        reason="" if answer == "real" else f"texture at step {position}",
        second_answer="yes" if position % 3 else "no",
        duration_ms=str(900 + 137 * position + reader_index),
    )


def answer_as(username: str, study_id: int, count: int | None = None) -> int:
    """Answer ``count`` images (all when None) as this reader, through the reading service."""
    with session_scope() as db:
        user = db.scalars(select(User).where(User.username == username)).one()
        study, study_reader = reading.reader_for(
            db, study_id=study_id, user_id=user.id, study_scope=None
        )
        reading.ensure_schedule(db, study, study_reader)
        index = int(study_reader.pseudonym[1:])
        answered = 0
        while count is None or answered < count:
            entry = reading.current_entry(db, study_reader)
            if entry is None:
                break
            reading.mark_shown(db, entry)
            synthetic = (
                db.scalar(
                    select(Image.origin)
                    .join(StudyItem, StudyItem.image_id == Image.id)
                    .where(StudyItem.id == entry.study_item_id)
                )
                is Origin.synthetic
            )
            form = _answer(index, entry.position, synthetic)
            reading.record_answer(db, study_reader, entry.opaque_id, form)
            answered += 1
        return answered


def build_read_study(name: str = "CXR realism") -> BuiltStudy:
    """Owner alice; readers r1 and r2 finished, researcher rita half-way, an invited reader
    a third of the way, r4 assigned but never started."""
    with session_scope() as db:
        owner = create_user(db, username="alice", password=None, role=Role.researcher)
        owner_id = owner.id
    set_ids = _image_sets(owner_id)
    with session_scope() as db:
        owner = db.get(User, owner_id)
        study = create_study(
            db, owner=owner, name=name,
            instructions="Decide whether each chest X-ray is real or synthetic.",
            image_set_ids=set_ids, design=DESIGN, reading=READING,
        )  # fmt: skip
        readers = {}
        for username, role in (("r1", Role.reader), ("r2", Role.reader), ("rita", Role.researcher)):
            user = create_user(db, username=username, password=None, role=role)
            assign_reader(db, study, user.id)
            readers[username] = user.id
        token, _ = create_invite(db, study=study, created_by=owner, hours=24, label="Dr Invited")
        invited, _ = accept_invite(db, token)
        readers[invited.username] = invited.id
        late = create_user(db, username="r4", password=None, role=Role.reader)
        assign_reader(db, study, late.id)
        readers["r4"] = late.id
        study_id = study.id
    answer_as("r1", study_id)
    answer_as("r2", study_id)
    answer_as("rita", study_id, TOTAL // 2)
    answer_as(invited.username, study_id, TOTAL // 3)
    return BuiltStudy(study_id, owner_id, readers)


# --- a mixed real set against small synthetic squares (issue 15) ------------------------------

# (width, height) of each real upload: 256-1024 px, none square, three formats.
MIXED_REAL_JPEG = ((1024, 820), (900, 700), (700, 960), (512, 380), (820, 1024))
MIXED_REAL_PNG16 = ((700, 512), (512, 384), (1000, 760), (300, 256))
MIXED_REAL_DICOM = ((512, 400), (640, 480), (384, 256))
MIXED_SYNTHETIC = 12  # 96 px square 8-bit PNGs, as a small GAN writes them


def _cxr(index: int) -> PILImage.Image:
    from ml.data.collections import available_collections

    files = available_collections()["paediatric-cxr"].files
    with PILImage.open(files[index % len(files)]) as im:
        return im.convert("L")


def _dicom(grey: PILImage.Image) -> bytes:
    """A 16-bit CT slice carrying this picture: pydicom's CT_small header, new pixel data."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    pixels = (np.asarray(grey, dtype=np.float64) / 255 * 3000).astype(np.int16)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    for tag in ("WindowCenter", "WindowWidth"):  # min-max, as an unwindowed export
        if tag in ds:
            delattr(ds, tag)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def mixed_source_rows() -> tuple[
    list[tuple[str, bytes, str, str]], list[tuple[str, bytes, str, str]]
]:
    """(real, synthetic) upload rows of (name, bytes, origin, label): real chest X-rays as
    JPEG, 16-bit PNG and DICOM at 256-1024 px in several aspect ratios; synthetic ones as
    96 px square PNGs, as the issue's skeptical reviewer built them."""
    real: list[tuple[str, bytes, str, str]] = []
    index = 0
    for width, height in MIXED_REAL_JPEG:
        out = io.BytesIO()
        _cxr(index).resize((width, height)).save(out, format="JPEG", quality=90)
        real.append((f"hospital_{index:02d}.jpeg", out.getvalue(), "real", "normal"))
        index += 1
    for width, height in MIXED_REAL_PNG16:
        grey = np.asarray(_cxr(index).resize((width, height)), dtype=np.uint16) * 257
        out = io.BytesIO()
        PILImage.fromarray(grey).save(out, format="PNG")
        real.append((f"hospital_{index:02d}.png", out.getvalue(), "real", "normal"))
        index += 1
    for width, height in MIXED_REAL_DICOM:
        real.append(
            (f"hospital_{index:02d}.dcm", _dicom(_cxr(index).resize((width, height))), "real",
             "normal")
        )  # fmt: skip
        index += 1
    synthetic = []
    for i in range(MIXED_SYNTHETIC):
        grey = _cxr(i + 3).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        side = min(grey.size)
        square = grey.crop(((grey.width - side) // 2, 0, (grey.width + side) // 2, side))
        out = io.BytesIO()
        square.resize((96, 96), PILImage.Resampling.LANCZOS).save(out, format="PNG")
        synthetic.append((f"gen_{i:03d}.png", out.getvalue(), "synthetic", "normal"))
    return real, synthetic


def mixed_source_image_sets(owner_id: int) -> list[int]:
    real, synthetic = mixed_source_rows()
    ids = []
    for name, rows in (("Hospital archive", real), ("GAN samples 96px", synthetic)):
        with session_scope() as db:
            image_set = create_image_set(
                db, owner_id=owner_id, name=name, default_origin=None,
                upload_path_or_file=_upload(rows), description="mixed sources",
            )  # fmt: skip
            ids.append(image_set.id)
    return ids
