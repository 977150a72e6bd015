"""The CLI's context object and its output, without click.

Both the click commands and the fast path (:mod:`taskmill.cli.fast`) print through
:func:`echo` and report errors through :func:`fail`, so the two print the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..json_text import orjson_safe

if TYPE_CHECKING:
    from ..capability.client import CapabilityClient, RemoteTasks
    from ..clock import Clock
    from ..project import Project


def stacks_on_request() -> None:
    """``kill -USR1`` a long-running command (``run``, ``watch``, ``worker``) to have the
    stack of each of its threads written to its standard error: what one that hangs waits
    on (its default, unhandled, would end it)."""
    import faulthandler
    import io
    import signal

    # (run in-process, by a test or a library, its standard error may be no file: none then)
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr.fileno(), all_threads=True)


@dataclass
class Ctx:
    cwd: Path
    env: Mapping[str, str]
    actor: str | None = None
    json: bool = False
    argv: list[str] = field(default_factory=list)
    """The command line (without the program name)."""
    clock: Clock | None = None
    """The ledger's clock (tests pass a fixed one; default: the system's)."""
    command: str | None = None
    """The command being run (set by the fast path; the click path reads it from click)."""
    hard_exit: bool = False
    """The command used a Temporal client: :func:`taskmill.cli.main` ends the process without
    the interpreter's finalization, which the SDK's native threads can crash
    (temporalio/sdk-python#300: "PyGILState_Release ... finalizing")."""
    _project: Project | None = field(default=None, repr=False)
    _client: CapabilityClient | None = field(default=None, repr=False)

    @property
    def turn_socket(self) -> str | None:
        """The capability socket of the agent turn this runs in (``$TASKMILL_SOCKET``):
        set, the ledger is reached only through it."""
        return self.env.get("TASKMILL_SOCKET") or None

    def client(self) -> CapabilityClient:
        if self._client is None:
            from ..capability.client import CapabilityClient

            assert self.turn_socket is not None
            self._client = CapabilityClient(self.turn_socket)
        return self._client

    def remote(self) -> RemoteTasks:
        """The ledger calls an agent has, through the turn's capability socket."""
        from ..capability.client import RemoteTasks

        return RemoteTasks(self.client())

    def refuse(self, op: str) -> NoReturn:
        """Inside a turn: this command is not the agent's to run. The mill records the
        attempt; the error says what it would have done."""
        import shlex

        raise self.client().refuse(op, shlex.join(["taskmill", *self.argv]))

    def project(self) -> Project:
        if self.turn_socket is not None:  # the ledger is not the agent's to open
            if self.command is not None:
                self.refuse(self.command)
            import click

            command = click.get_current_context().command_path.split(" ", 1)
            self.refuse(command[1] if len(command) > 1 else command[0])
        if self._project is None:
            from ..project import open_project

            self._project = open_project(  # (a long upgrade said on stderr, but not
                self.cwd, self.env, clock=self.clock,  # where stderr is JSON's)
                notice=None if self.json else lambda text: echo(f"taskmill: {text}", err=True))
            if self.actor:
                self._project.ledger.actor = self.actor
        return self._project

    def close(self) -> None:
        if self._project is not None:
            self._project.close()
            self._project = None
        if self._client is not None:
            self._client.close()
            self._client = None


def echo(message: str = "", *, err: bool = False) -> None:
    """``click.echo`` of a string: written with a newline, and flushed. Text with an escape
    character (which click strips, or not, by its rules), or a stream that is not UTF-8
    (which click may wrap), goes through click itself."""
    stream = sys.stderr if err else sys.stdout
    if "\033" in message or not utf8(stream):
        import click

        click.echo(message, err=err)
        return
    stream.write(message + "\n")
    stream.flush()


def utf8(stream: Any) -> bool:
    """Whether ``stream`` is a text stream that writes UTF-8."""
    encoding = getattr(stream, "encoding", None)
    return isinstance(encoding, str) and encoding.lower().replace("-", "") == "utf8"


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def emit_json(data: Any) -> None:
    echo(dumps(data))


def emit_json_items(items: Iterable[Any]) -> None:
    """A JSON array of ``items``, written one item at a time as they come: the same bytes
    as ``emit_json(list(items))``, without holding the list or its text."""
    stream = sys.stdout
    if not utf8(stream):
        emit_json(list(items))
        return
    import orjson

    out = getattr(stream, "buffer", None)
    if out is None:
        _emit_text_items(stream, items)
        return
    stream.flush()
    with collector_paused():
        _emit_bytes(out, items, orjson, getattr(stream, "errors", None) or "strict")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile (on again after, if it was): a long
    listing makes and drops its rows one at a time, with no reference cycles to collect,
    and the collector's passes over them (and over what the listing holds: its links) cost
    ~3-10% of it (a forked child inherits the setting)."""
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def write_json_items(out: Any, items: Iterable[Any]) -> None:
    """:func:`emit_json_items` into the binary stream ``out`` (UTF-8, strict)."""
    import orjson

    _emit_bytes(out, items, orjson, "strict")


def emit_json_texts(texts: Iterable[str], tee: Callable[[bytes], None] | None = None) -> bool:
    """A JSON array of items each already written as text (indented as an item of
    ``dumps(list)``: see :func:`taskmill.ledger.rows.item_text`), passed on as they come
    (``tee``: given each part written, too). False, having written nothing, when standard
    output is not a UTF-8 byte stream (the caller then writes the items another way)."""
    stream = sys.stdout
    out = getattr(stream, "buffer", None)
    if out is None or not utf8(stream):
        return False
    errors = getattr(stream, "errors", None) or "strict"
    stream.flush()
    chunk: list[str] = []
    size = 0
    first = "[\n  "
    for text in texts:
        chunk.append(first)
        chunk.append(text)
        first = ",\n  "
        size += len(text)
        if size >= 1 << 16:
            data = "".join(chunk).encode("utf-8", errors)
            write_all(out, data)
            if tee is not None:
                tee(data)
            chunk.clear()
            size = 0
    chunk.append("[]\n" if first == "[\n  " else "\n]\n")
    data = "".join(chunk).encode("utf-8", errors)
    write_all(out, data)
    if tee is not None:
        tee(data)
    out.flush()
    return True


def _emit_bytes(out: Any, items: Iterable[Any], orjson: Any, errors: str) -> None:
    encode = orjson.dumps
    indent = orjson.OPT_INDENT_2
    chunk = bytearray()
    first = True
    for item in items:
        chunk += b"[\n  " if first else b",\n  "
        first = False
        data: bytes | None = None
        if orjson_safe(item):
            try:
                data = encode(item, option=indent)
            except (orjson.JSONEncodeError, TypeError):
                data = None
        if data is None:
            data = _indented(item, "\n").encode("utf-8", errors)
        chunk += data.replace(b"\n", b"\n  ")
        if len(chunk) >= 1 << 16:
            write_all(out, chunk)
            chunk.clear()
    chunk += b"[]\n" if first else b"\n]\n"
    write_all(out, chunk)
    out.flush()


def write_all(out: Any, data: bytes | bytearray) -> None:
    """All of ``data`` into the binary stream ``out``: unbuffered (``python -u``,
    ``PYTHONUNBUFFERED``), a write to a pipe can take part of it, and the rest would be
    dropped without a word; it is written after, or fails as a closed pipe does."""
    view = memoryview(data)
    while view:
        view = view[out.write(view) or 0:]


def _emit_text_items(stream: Any, items: Iterable[Any]) -> None:
    first = True
    for item in items:
        text = _indented(item, "\n  ")
        stream.write(("[\n  " if first else ",\n  ") + text)
        first = False
    stream.write("[]\n" if first else "\n]\n")
    stream.flush()


_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode
_STRING = json.encoder.encode_basestring


def _scalar(value: Any) -> str:
    if value.__class__ is str:
        return str(_STRING(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ is int:
        return int.__repr__(value)
    return _ENCODE(value)


_KEYS: dict[str, str] = {}


def _indented(value: Any, newline: str) -> str:
    """``dumps(value)`` with every line after the first indented by ``newline`` (a line
    break and spaces); written out here because ``indent`` makes json pure Python."""
    cls = value.__class__
    if cls is dict and value:
        inner = newline + "  "
        parts = []
        for k, v in value.items():
            key = _KEYS.get(k) if k.__class__ is str else None
            if key is None:
                if k.__class__ is not str:
                    return dumps(value).replace("\n", newline)  # JSON has no raw breaks
                key = _KEYS[k] = _STRING(k) + ": "
            c = v.__class__
            parts.append(key + (_STRING(v) if c is str else "null" if v is None
                                else int.__repr__(v) if c is int
                                else _indented(v, inner)))
        return "{" + inner + ("," + inner).join(parts) + newline + "}"
    if cls is list and value:
        inner = newline + "  "
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in value) + newline + "]"
    if cls is list:
        return "[]"
    if cls is dict:
        return "{}"
    if isinstance(value, (dict, list, tuple)):
        return dumps(value).replace("\n", newline)
    return _scalar(value)


def known_error(exc: BaseException) -> Exception | None:
    """``exc`` as the error a person is told of (a :class:`TaskmillError`; what SQLite
    raised, said plainly: a full disk, say), or None for a defect (raised as it is)."""
    from ..errors import TaskmillError

    if isinstance(exc, TaskmillError):
        return exc
    if type(exc).__module__ == "sqlite3":
        from ..ledger.sqlite.schema import database_error, storage_failure

        if storage_failure(exc):
            return database_error(exc)
    return None


def fail(exc: Exception, as_json: bool) -> None:
    """Report a :class:`TaskmillError` (a message and hint, or a JSON error object on
    standard error) and exit with its status; anything else is raised again."""
    from ..errors import TaskmillError

    exc = known_error(exc) or exc
    if isinstance(exc, TaskmillError):
        if as_json:
            sys.stderr.write(json.dumps(exc.to_json(), ensure_ascii=False) + "\n")
        else:
            from ..validation import printable

            echo(f"error: {printable(exc.message, multiline=True)}", err=True)
            if exc.hint:
                echo(f"  hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    raise exc


def parse_json_option(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        from ..errors import InvalidInput

        raise InvalidInput(f"--{name} must be JSON: {exc}") from exc
