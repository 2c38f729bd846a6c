"""The Celery application: JSON messages only, late acknowledgement, one queue named `gpu`.

Each worker process serves one device (`--device` or HAN_DEVICE: auto, cpu, cuda:N) with a
concurrency of one; run one worker per GPU. Nothing here touches CUDA: the model loads lazily in
the pool's child process (worker.service). Importing this module starts nothing either: without
HAN_BROKER_URL the URL names the embedded Redis's socket, and the server is started by the worker
when it boots and by whatever enqueues (worker.submit), not by an import.
"""
from __future__ import annotations

import os
import ssl

import click
from celery import Celery, bootsteps
from celery.signals import celeryd_init, worker_process_init

from han.settings import get_settings
from worker.broker import broker_url, ensure_embedded_broker

QUEUE = "gpu"

settings = get_settings()


def broker_ssl(settings) -> dict | None:
    """rediss:// verifies the server's certificate: against HAN_BROKER_CA, or the system's CA bundle."""
    if not (settings.broker_url or "").startswith("rediss://"):
        return None
    options = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.broker_ca:
        options["ssl_ca_certs"] = settings.broker_ca
    return options


app = Celery("han", include=["worker.tasks"])
app.conf.update(
    broker_url=broker_url(settings, start=False),
    broker_use_ssl=broker_ssl(settings),
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # a restarted Redis is waited for, not given up on
    # an unacknowledged batch (its worker died) is delivered again after this many seconds
    broker_transport_options={"visibility_timeout": settings.visibility_timeout},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_default_queue=QUEUE,
    task_routes={"han.classify_batch": {"queue": QUEUE}},
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    # the pool process is replaced after this many batches (the next one reloads the model): the
    # ~1.5 KiB per batch it keeps (python -m bench soak) stays bounded however long a worker runs
    worker_max_tasks_per_child=settings.max_tasks_per_child or None,
    worker_hijack_root_logger=False,
)


class DeviceOption(bootsteps.Step):
    """`--device` on the worker command line; the pool's children read it from HAN_DEVICE."""

    def __init__(self, parent, device=None, **options):
        super().__init__(parent, **options)
        if device:
            os.environ["HAN_DEVICE"] = device


app.user_options["worker"].add(click.Option(["--device"], default=None,
                                            help="auto, cpu or cuda:N (default: HAN_DEVICE or auto)"))
app.steps["worker"].add(DeviceOption)


@worker_process_init.connect
def _fresh_connections(**_):
    from db.session import dispose_engines

    dispose_engines()


@celeryd_init.connect
def _embedded_broker(**_):
    if not settings.broker_url:
        ensure_embedded_broker(settings)
