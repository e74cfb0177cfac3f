"""Bring your own generator: a TorchScript module trained elsewhere, imported as a GAN run.

The web tier (and the CLI) checks the manifest, streams the file under the home's
`generators/` folder with a size cap, refuses a file that is not even a zip archive (every
TorchScript file is one), and queues an `import_generator` job. A worker then loads the module
and checks it against its manifest (`ml.generators.torchscript`); once that job succeeded its
folder holds `generator.json`, which sampling reads like a checkpoint, so the generator gets
the same sampling, benchmark and reader study as a synthbench run. Torch is never imported here.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.config import get_settings
from app.jobs.service import create_job
from app.jobs.specs import SpecError, job_spec
from app.models import Job
from app.web.body_limit import size_text
from ml.generators.manifest import GeneratorManifest, ManifestError, parse_manifest_text

IMPORT_GENERATOR = "import_generator"
# TorchScript files are zip archives (torch.jit.save); anything else is refused at once.
ZIP_MAGIC = b"PK\x03\x04"
MAX_MANIFEST_BYTES = 64 * 1024
CHUNK = 1 << 20


def max_generator_bytes() -> int:
    return get_settings().max_upload_bytes


def generators_dir() -> Path:
    return get_settings().home / "generators"


def parse_manifest(text: str | bytes) -> GeneratorManifest:
    if isinstance(text, bytes):
        if len(text) > MAX_MANIFEST_BYTES:
            raise SpecError("manifest", "The manifest is over 64 KB: it is a small JSON file.")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("manifest", "The manifest is not UTF-8 JSON text.") from None
    if not text.strip():
        raise SpecError("manifest", "Give the generator's manifest (JSON).")
    try:
        return parse_manifest_text(text)
    except ManifestError as exc:
        raise SpecError("manifest", str(exc)) from None


def store_generator(upload: BinaryIO, limit: int | None = None) -> tuple[Path, int]:
    """Stream `upload` to a fresh file under `generators_dir()`: (path, size in bytes)."""
    limit = max_generator_bytes() if limit is None else limit
    head = upload.read(len(ZIP_MAGIC))
    if not head:
        raise SpecError("generator", "Choose the generator's TorchScript file (.pt).")
    if head != ZIP_MAGIC:
        raise SpecError(
            "generator",
            "The file is not a TorchScript module: save one with "
            "torch.jit.save(torch.jit.script(generator), 'generator.pt').",
        )
    folder = generators_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{secrets.token_hex(8)}.pt"
    size = len(head)
    try:
        with dest.open("wb") as fh:
            fh.write(head)
            while chunk := upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise SpecError(
                        "generator",
                        f"The generator file is over the {size_text(limit)} limit.",
                    )
                fh.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest, size


def import_spec(name: str, path: Path, size: int, manifest: GeneratorManifest) -> dict[str, Any]:
    return {
        "name": name,
        "file": str(path),
        "file_bytes": size,
        "manifest": manifest.as_dict(),
        "class_names": list(manifest.classes),
    }


def start_import(
    db: Session,
    *,
    owner_id: int | None,
    upload: BinaryIO,
    manifest_text: str | bytes,
    name: str = "",
    queue: str | None = None,
) -> Job:
    """Check the manifest and the file's size and kind, store it, queue its validation."""
    manifest = parse_manifest(manifest_text)  # first: a bad manifest stores nothing
    clean = " ".join((name or manifest.name or "Imported generator").split())[:200]
    path, size = store_generator(upload)
    try:
        spec = job_spec(IMPORT_GENERATOR, import_spec(clean, path, size, manifest), queue)
        return create_job(db, replace(spec, name=clean), owner_id=owner_id)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def import_generator(params: dict[str, Any], out: Path, progress: Any, stop: Any) -> dict:
    """The worker's handler (imports torch): check the module, make `out` its run folder.
    A module that fails a check fails the job with `GeneratorCheckError`'s message."""
    from ml.generators.torchscript import import_torchscript

    progress(0, 1, "checking the module against its manifest")
    result = import_torchscript(Path(params["file"]), params["manifest"], out)
    progress(1, 1, "checked")
    return result


def visible_generator(db: Session, job_id: int, principal: Principal) -> Job | None:
    """The imported generator with this job id, if the principal may see it."""
    job = db.get(Job, job_id)
    if job is not None and job.type == IMPORT_GENERATOR and principal.can_see(job):
        return job
    return None
