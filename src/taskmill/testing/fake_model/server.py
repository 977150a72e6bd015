"""Running the fake model: in a background thread for tests, or in the foreground."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn

from taskmill.testing.fake_model.app import FakeModelApp, RequestLog
from taskmill.testing.fake_model.script import Script, ScriptError, coerce_script


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the fake model binds loopback addresses only, not {host!r}")


class FakeModelServer:
    """A scripted model server on a loopback port.

    >>> with FakeModelServer("script.toml", log_path=tmp / "requests.ndjson") as server:
    ...     env = {"ANTHROPIC_BASE_URL": server.url}

    ``port=0`` picks a free port; the real one is :attr:`port` once started.
    """

    def __init__(
        self,
        script: Script | Mapping[str, Any] | Path | str,
        log_path: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        _check_loopback(host)
        self.script = coerce_script(script)
        self.host = host
        self.log = RequestLog(Path(log_path) if log_path is not None else None)
        self._app = FakeModelApp(self.script, self.log)
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def app(self) -> Any:
        """The ASGI application (for in-process clients such as ``httpx.ASGITransport``)."""
        return self._app.app

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake model server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a path, e.g. ``http://127.0.0.1:43123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log so far (the same entries as the NDJSON file)."""
        return self.log.entries()

    def model_requests(self, source: str | None = None) -> list[dict[str, Any]]:
        """Logged model calls, optionally only those served from ``source``
        (``script``, ``side``, ``final`` or ``unmatched``)."""
        return [
            e
            for e in self.requests
            if "source" in e["served"] and (source is None or e["served"]["source"] == source)
        ]

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted connections only
        # then (otherwise a streamed answer on a kept-alive connection waits ~40 ms)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        self._socket = sock
        self._port = int(sock.getsockname()[1])
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self._app.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving in a daemon thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake model server is already started")
        sock = self.bind()
        server = self._uvicorn()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-model", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (a stalled reply is cut short) and close the socket."""
        self._app.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C / SIGTERM)."""
        sock = self.bind()
        print(f"taskmill fake model listening on {self.url}", file=sys.stderr, flush=True)
        try:
            self._uvicorn().run(sockets=[sock])
        finally:
            self._app.stopping.set()
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    script_path: Path, port: int, host: str = "127.0.0.1", log_path: Path | None = None
) -> None:
    """Serve ``script_path`` on ``host:port`` until interrupted (blocks)."""
    FakeModelServer(script_path, log_path=log_path, host=host, port=port).serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.testing.fake_model",
        description="A scripted model server (Anthropic, OpenAI Responses/Chat, Gemini) "
        "for driving real coding-agent CLIs offline.",
    )
    parser.add_argument("--script", type=Path, required=True, help="script file (.toml or .json)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--log", type=Path, default=None, help="NDJSON request log file")
    args = parser.parse_args(argv)
    try:
        serve(args.script, args.port, args.host, args.log)
    except (ScriptError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
