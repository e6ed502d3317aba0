"""Local Ray clusters for tests, started as an operator would: ``ray start --head`` on 127.0.0.1 in a temporary
folder of their own with token authentication, and stopped by killing the processes of that session only (by pid:
``ray stop`` would end every Ray process on the machine, other test runs' clusters included)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_pids(temp: str, keep: set[int]) -> list[int]:
    """Processes of the cluster whose RAY_TMPDIR is ``temp`` (GCS, raylet, workers) and their descendants (Ray's
    agents get a bare environment), except ``keep``."""
    marker = f"RAY_TMPDIR={temp}".encode()
    parents, session = {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                session.add(int(entry))

    def ours(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            if pid in session:
                return True
            seen.add(pid)
            pid = parents.get(pid, 0)
        return False

    return [pid for pid in parents if pid not in keep and ours(pid)]


def kill_cluster(temp: str, keep: set[int] = frozenset()) -> None:
    """SIGKILL every process of that cluster (by pid), as a crashed head machine would look to its clients."""
    for pid in _session_pids(temp, keep | {os.getpid()}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def local_cluster(cpus: int = 3) -> Iterator[tuple[str, dict, str]]:
    """A one-node Ray cluster with its own temporary folder and token: ``(address, env, temp folder)``."""
    if not RAY.exists():
        pytest.fail(f"the Ray CLI is missing beside {sys.executable} (requirements.txt installs ray[data])")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": temp, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    start = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
             "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}", env, temp
    finally:
        kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
