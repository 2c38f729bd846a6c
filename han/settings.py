"""All configuration from the environment, read in one place; command-line flags override it.

    HAN_DATABASE_URL    SQLAlchemy URL (default: sqlite:///han.db in the working folder)
    HAN_BROKER_URL      Celery broker (default: an embedded Redis on a local socket, see worker.broker)
    HAN_CHECKPOINT_DIR  where checkpoints vN/ live (default: checkpoints)
    HAN_DEVICE          auto, cpu or cuda:N (default: auto)
    HAN_DATA            the 20news-bydate archive or folder (default: ../shared/data/20news-bydate.tar.gz)
    HAN_HOME            run-time files: embedded broker socket, logs (default: .han)
    HAN_VISIBILITY_TIMEOUT  seconds before an unacknowledged batch is delivered again (default: 600)
    HAN_BROKER_CA       CA bundle that signs a rediss:// broker's certificate (default: the system's)
    HAN_WORKER_MAX_TASKS  batches before a worker's pool process is replaced; 0: never (default: 2000)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATA = "../shared/data/20news-bydate.tar.gz"


class SettingsError(ValueError):
    """An environment variable with a value no run can use; the message names it."""


def _whole_number(env, name: str, default: int, minimum: int) -> int:
    value = env.get(name) or str(default)
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise SettingsError(f"{name}={value!r}: expected a whole number >= {minimum}")
    return number


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str | None  # None: the embedded Redis
    checkpoint_dir: Path
    device: str
    data: Path
    home: Path
    visibility_timeout: int  # seconds; a batch must finish well inside it
    broker_ca: str | None = None  # CA file for rediss://; None: the system's CA bundle
    max_tasks_per_child: int = 2000  # batches before a worker's pool process is replaced; 0: never

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def get_settings() -> Settings:
    env = os.environ
    return Settings(
        database_url=env.get("HAN_DATABASE_URL") or "sqlite:///han.db",
        broker_url=env.get("HAN_BROKER_URL") or None,
        checkpoint_dir=Path(env.get("HAN_CHECKPOINT_DIR") or "checkpoints"),
        device=env.get("HAN_DEVICE") or "auto",
        data=Path(env.get("HAN_DATA") or DEFAULT_DATA),
        home=Path(env.get("HAN_HOME") or ".han"),
        visibility_timeout=_whole_number(env, "HAN_VISIBILITY_TIMEOUT", 600, minimum=1),
        broker_ca=env.get("HAN_BROKER_CA") or None,
        max_tasks_per_child=_whole_number(env, "HAN_WORKER_MAX_TASKS", 2000, minimum=0),
    )


def mask_url(url: str | None) -> str:
    """A URL fit to print: any password replaced by *** (redis://:pw@h, rediss://u:pw@h, postgresql://u:pw@h)."""
    if not url:
        return "(embedded)"
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def resolve_device(name: str = "auto") -> str:
    """`auto` -> cuda when present, else cpu; `cpu` and `cuda:N` are checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but no CUDA device is available")
        return name
    raise ValueError(f"device {name!r}: expected auto, cpu or cuda:N")
