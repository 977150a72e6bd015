"""The capability socket's wire format: JSON lines over a unix stream socket.

A request is one line ``{"op": NAME, "args": {...}}``; its answer is one line, either
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message", "hint"?}}``
(the ledger's error codes; ``forbidden`` for what the capability refuses). A connection may
carry any number of requests, one after the other.

Unix socket addresses are limited to about 100 bytes; a longer path is reached through
``/proc/self/fd/N/`` of its directory (Linux), so the socket may live anywhere.

Only the standard library and :mod:`taskmill.errors` are imported here: the CLI inside a
turn uses this module, and ``taskmill --help`` must stay fast.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors

MAX_LINE = 4 * 1024 * 1024
"""The largest request or answer (a ``show`` of a task with many attempts fits)."""
SUN_PATH_MAX = 100

REFUSAL_TAIL = "only the mill closes tasks after their checks"


def refusal_message(what: str) -> str:
    """What every refusal of the capability says."""
    return f"not allowed inside a taskmill turn: {what}; {REFUSAL_TAIL}"


def _with_short_path(path: Path, action: Callable[[str], None]) -> None:
    """Run ``action`` (bind or connect) on ``path``, through ``/proc/self/fd`` when the
    path is too long for a unix socket address."""
    if len(os.fsencode(str(path))) < SUN_PATH_MAX:
        action(str(path))
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        action(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


def bind_unix(sock: socket.socket, path: Path) -> None:
    _with_short_path(path, sock.bind)


def connect_unix(sock: socket.socket, path: Path) -> None:
    _with_short_path(path, sock.connect)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode() + b"\n"


class LineReader:
    """Lines of a stream socket, each at most :data:`MAX_LINE` bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> bytes | None:
        """The next line (without its newline); None at the end of the stream."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise errors.InvalidInput(f"a message is larger than {MAX_LINE} bytes")
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


ERROR_CLASSES: dict[str, type[errors.TaskmillError]] = {
    cls.code: cls for cls in (
        errors.TaskmillError, errors.UserError, errors.NotInitialized, errors.NotARepository,
        errors.InvalidInput, errors.NotFound, errors.Conflict, errors.ClaimConflict,
        errors.Forbidden, errors.IntegrityError, errors.GitError, errors.ConfigError,
        errors.PlanError)
}


def error_json(exc: errors.TaskmillError) -> dict[str, Any]:
    data = exc.to_json()["error"]
    assert isinstance(data, dict)
    return data


def error_from_json(data: Any) -> errors.TaskmillError:
    """The exception an error answer stands for (a plain :class:`TaskmillError` for a code
    this side does not know)."""
    if not isinstance(data, dict):
        return errors.TaskmillError(f"the mill answered with a malformed error: {data!r}")
    code = str(data.get("code") or "error")
    message = str(data.get("message") or "the mill refused the request")
    hint = data.get("hint")
    if code == "cycle":
        return errors.CycleError(message, list(data.get("cycle") or []),
                                 hint=str(hint) if hint else None)
    cls = ERROR_CLASSES.get(code, errors.TaskmillError)
    return cls(message, hint=str(hint) if hint else None)
