"""docker-compose.yml is the production path: check its shape without a Docker engine."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_the_production_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "web", "worker-cpu", "worker-gpu"}


def test_app_services_share_database_broker_and_artefacts() -> None:
    services = _compose()["services"]
    for name in ("web", "worker-cpu", "worker-gpu"):
        env = services[name]["environment"]
        assert env["SYNTHBENCH_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert env["SYNTHBENCH_DATABASE_URL"].endswith("@postgres:5432/synthbench")
        assert env["SYNTHBENCH_BROKER_URL"] == "redis://redis:6379/0"
        assert env["SYNTHBENCH_HOME"] == "/data"
        assert "artefacts:/data" in services[name]["volumes"], name
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}
    assert "artefacts" in _compose()["volumes"]


def test_workers_consume_their_queues() -> None:
    services = _compose()["services"]
    assert services["worker-cpu"]["command"][:4] == ["synthbench", "worker", "--queues", "cpu"]
    assert services["worker-gpu"]["command"][:4] == ["synthbench", "worker", "--queues", "gpu"]


def test_gpu_worker_reserves_nvidia_devices() -> None:
    devices = _compose()["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def _flags(command: list[str]) -> dict[str, str]:
    """`--name value` pairs of a command line."""
    return {name: value for name, value in pairwise(command) if name.startswith("--")}


def test_redis_persists_and_data_has_volumes() -> None:
    compose = _compose()
    redis = compose["services"]["redis"]
    assert redis["command"][0] == "redis-server"
    flags = _flags(redis["command"])
    assert flags["--appendonly"] == "yes"
    assert flags.get("--appendfsync", "everysec") in {"always", "everysec"}
    assert flags.get("--dir", "/data") == "/data"  # where the volume is
    assert "redisdata:/data" in redis["volumes"]
    assert {"redisdata", "pgdata"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]


def test_services_restart_after_a_crash() -> None:
    # A worker killed by the OOM killer comes back in its container, under the same hostname,
    # and resumes its jobs; a broker or database that died comes back on its volume.
    for name, service in _compose()["services"].items():
        assert service.get("restart") in {"unless-stopped", "always"}, name


def test_web_migrates_before_serving() -> None:
    command = " ".join(_compose()["services"]["web"]["command"])
    assert command.index("synthbench db upgrade") < command.index("synthbench serve")
