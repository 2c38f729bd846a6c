"""docker-compose.yml describes the scale-out deployment, and the README shows the same commands."""
from __future__ import annotations

import subprocess
import sys

import yaml

from tests.conftest import ROOT


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_their_commands():
    services = compose()["services"]
    assert {"redis", "postgres", "migrate", "worker", "flower"} <= set(services)
    assert services["migrate"]["command"] == "alembic upgrade head"
    worker = services["worker"]
    assert worker["command"].startswith("celery -A worker worker -Q gpu")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["flower"]["command"].startswith("celery -A worker flower")
    env = worker["environment"]
    assert env["HAN_BROKER_URL"].startswith("redis://redis:")
    assert env["HAN_DATABASE_URL"].startswith("postgresql://") and "${POSTGRES_PASSWORD" in env["HAN_DATABASE_URL"]


def test_readme_shows_the_compose_commands():
    readme = (ROOT / "README.md").read_text()
    for name in ("migrate", "worker", "flower"):
        assert compose()["services"][name]["command"] in readme, name


def test_the_worker_accepts_the_device_option_used_in_compose():
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "worker", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HAN_BROKER_URL": "redis://127.0.0.1:6379/7"})
    assert result.returncode == 0, result.stderr
    assert "--device" in result.stdout
