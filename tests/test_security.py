"""JSON-only messages, no unpickling anywhere, masked secrets."""
from __future__ import annotations

import re

from han.settings import mask_url
from tests.conftest import ROOT

SOURCES = [p for folder in ("cli", "han", "trainer", "worker", "db", "migrations", "bench")
           for p in (ROOT / folder).rglob("*.py")]


def test_celery_accepts_json_only(monkeypatch):
    monkeypatch.setenv("HAN_BROKER_URL", "redis://127.0.0.1:6379/7")
    from worker.app import app

    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.broker_transport_options["visibility_timeout"] > 0


def test_nothing_in_the_project_unpickles():
    forbidden = re.compile(r"\bimport pickle\b|\bfrom pickle\b|\bcPickle\b|torch\.load\(|torch\.save\(|joblib|"
                           r"allow_pickle\s*=\s*True|yaml\.load\(|\bdill\b|\bmarshal\.loads")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES
                 for i, line in enumerate(p.read_text().splitlines(), 1) if forbidden.search(line)]
    assert SOURCES and offenders == []


def test_urls_are_masked_wherever_printed():
    assert mask_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("rediss://user:s3cret@cache:6380/1?ssl_cert_reqs=required") == \
        "rediss://user:***@cache:6380/1?ssl_cert_reqs=required"
    assert mask_url("postgresql://han:s3cret@db/han") == "postgresql://han:***@db/han"
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_rediss_urls_verify_certificates(tmp_path):
    import ssl
    import subprocess
    import sys

    code = "from worker.app import app; import ssl; print(app.conf.broker_use_ssl == {'ssl_cert_reqs': ssl.CERT_REQUIRED})"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HAN_BROKER_URL": "rediss://:pw@cache.example:6380/0",
                              "HAN_HOME": str(tmp_path)})
    assert out.stdout.strip() == "True", out.stderr
    assert ssl.CERT_REQUIRED
