"""The network allowlist of the sandbox (``[sandbox] network``), enforced host by host.

A small HTTP ``CONNECT`` proxy on a unix socket (mode 0600) under the run directory. The
sandbox keeps its network namespace (``--unshare-net``); its pid 1 bridges a loopback port
inside it to this socket (:mod:`taskmill.sandbox_init`) and the command gets ``HTTPS_PROXY``
and friends pointing there (:meth:`taskmill.sandbox.Sandbox.command`).

* ``CONNECT host:port`` is tunnelled when ``host:port`` is on the allowlist: an exact host
  (case-insensitive; ``[::1]`` for an IPv6 address) or ``*.example.org`` (any subdomain of
  ``example.org``, not ``example.org`` itself), and the same port;
* anything else is answered ``403 Forbidden`` and recorded (``on_refused``): a CONNECT to a
  host or port not on the list, and every plain-HTTP request (``GET http://...``): only
  tunnels (HTTPS) go through, so nothing readable in clear crosses the allowlist.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .capability.protocol import bind_unix
from .errors import ServiceError

HEAD_LIMIT = 16384
"""The most a request's head may be (bytes); a longer one is refused."""
CONNECT_TIMEOUT_S = 30.0

Refused = Callable[[str, str], None]
"""``on_refused(target, reason)``: a request the allowlist refused."""


class NetProxyError(ServiceError):
    """The network allowlist proxy could not start."""


@dataclass(frozen=True)
class Entry:
    host: str
    """Lower case, without brackets; ``*.suffix`` matches subdomains."""
    port: int

    @classmethod
    def parse(cls, text: str) -> Entry:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"not host:port: {text!r}")
        return cls(_bare(host), int(port))

    def allows(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


def _bare(host: str) -> str:
    host = host.lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class Allowlist:
    def __init__(self, entries: Sequence[str]) -> None:
        self.entries = tuple(Entry.parse(e) for e in entries)

    def allows(self, target: str) -> tuple[str, int] | None:
        """``(host, port)`` of a CONNECT target when the list allows it, else None."""
        try:
            entry = Entry.parse(target)
        except ValueError:
            return None
        if any(e.allows(entry.host, entry.port) for e in self.entries):
            return entry.host, entry.port
        return None


class NetProxy:
    """The CONNECT proxy of a run: :meth:`start` it, :meth:`stop` it with the run."""

    def __init__(self, socket_path: Path, allowlist: Sequence[str], *,
                 on_refused: Refused | None = None) -> None:
        self.socket_path = socket_path
        self.allowlist = Allowlist(allowlist)
        self.on_refused = on_refused
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bind_unix(sock, self.socket_path)  # a long path (a deep checkout) too
            os.chmod(self.socket_path, 0o600)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise NetProxyError(f"cannot start the network allowlist proxy on "
                                f"{self.socket_path}: {exc}") from None

        async def open_server() -> None:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock)

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(open_server())
            except BaseException as exc:  # handed to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="taskmill-netproxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise NetProxyError(f"cannot start the network allowlist proxy on "
                                f"{self.socket_path}: {failure[0]}")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = None
        self.socket_path.unlink(missing_ok=True)

    def _refuse(self, target: str, reason: str) -> None:
        if self.on_refused is not None:
            with contextlib.suppress(Exception):
                self.on_refused(target, reason)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            if len(head) > HEAD_LIMIT:
                await _answer(writer, 431, "Request Header Fields Too Large")
                return
            words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, target = (words[0], words[1]) if len(words) >= 2 else ("", "")
            if method != "CONNECT":
                reason = ("only HTTPS (CONNECT) goes through taskmill's allowlist proxy"
                          if method else "not an HTTP request")
                self._refuse(target, reason)
                await _answer(writer, 403, "Forbidden", reason)
                return
            allowed = self.allowlist.allows(target)
            if allowed is None:
                reason = "not on the [sandbox] network allowlist"
                self._refuse(target, reason)
                await _answer(writer, 403, "Forbidden", f"{target}: {reason}")
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*allowed), CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError) as exc:
                await _answer(writer, 502, "Bad Gateway", f"{target}: {exc}")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str, body: str = "") -> None:
    data = (body + "\n").encode() if body else b""
    writer.write(f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        pass
