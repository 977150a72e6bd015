"""The lean path: ``ready [-n N]`` and ``show ID``, with ``--json`` or as text, in a process
that imports :mod:`sqlite3` and little else (the text laid out by
:mod:`taskmill.cli.lean_table`, without rich's console, where it can be exactly).

Python's start-up is ~8 ms; the ledger's modules (dataclasses, pathlib, json, TOML, the
store) cost four times that before a row is read. For the two everyday reads the entry point
(:func:`taskmill.cli.main`) first asks :func:`answer`, which reads the ledger with the store's
own statements (:mod:`taskmill.ledger.lean`, loaded without the rest of the package) and
shapes each row as :meth:`taskmill.model.Task.to_json` does (``ready --json`` has SQLite
write each task's JSON text: :func:`ready_json`). It answers only what it fully
understands and hands everything else to the full path untouched, having written nothing:
any other command line or option, an agent turn, ``$TASKMILL_DIR`` or a database URL, a
config file the full path has not checked (see :mod:`taskmill.lean_config`), Beads-compatible
readiness, roles (whose budgets can hold tasks back), a task with a ``defer_until``, a task in
progress (``show`` says whether its run was interrupted), an id that is not exactly a task's,
a ledger that needs a migration, an output stream that is not UTF-8, or any error (the full
path then reports it in its own words). ``TASKMILL_LEAN=0`` turns it off.
"""

from __future__ import annotations

import itertools
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from types import ModuleType
    from typing import Any

SWITCH_ENV = "TASKMILL_LEAN"
"""``0``: every command goes through the full path (tests compare the two)."""
FULL_PATH_ENV = ("TASKMILL_SOCKET", "_TASKMILL_COMPLETE", "TASKMILL_DIR",
                  "TASKMILL_DATABASE_URL")
"""Set (non-empty), these change what the commands do: the full path serves them."""
LIMIT_MAX = 1_000_000
"""``ready -n``'s largest value (:data:`taskmill.validation.LIMIT_MAX`)."""
ID_MAX = 200
"""The longest id a user may give (:data:`taskmill.validation.NAME_MAX`)."""
CONTROL = frozenset([*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028",
                      "\u2029"])
"""What :func:`taskmill.validation.task_ref` refuses in an id."""
BIG = 2000
"""From this many tasks on, the JSON is written by orjson (as the full path does)."""


class Unsure(Exception):
    """The lean path leaves this command line to the full path."""


def serve(argv: list[str], env: Mapping[str, str], cwd: str | None, *,
          whole_process: bool = False) -> None:
    """Answer ``argv`` and exit, or return having written nothing (``cwd``: the working
    directory's, by default; ``whole_process``: see :func:`emit`)."""
    out = pieces(argv, env, cwd)
    if out is not None:
        emit(out, whole_process=whole_process)


def emit(out: bytes | Iterable[list[bytes]], *, whole_process: bool = False) -> None:
    """Write ``out`` (or groups of its pieces, in order, as they come: :func:`pieces`; a
    system call for many pieces: :func:`write_pieces`) to standard output and exit 0
    (exit 1 on a closed pipe, as the full path does; exit 1 with a word on standard error
    when a group after the first cannot be made: the answer is cut short). ``whole_process`` (the command line is the
    process's own, not a call from Python): once the output is flushed and the ``atexit``
    functions have run, the process ends at once (:func:`os._exit`), without the
    interpreter's teardown (freeing every module and object, a last garbage collection:
    ~2-3 ms, more than some commands' own work); nothing is left to close (the caller
    closed its connection)."""
    groups = [[out]] if isinstance(out, bytes) else out
    try:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno() if hasattr(os, "writev") else -1
        except (AttributeError, OSError, ValueError):  # (not a file: written joined)
            fd = -1
        send = getattr(groups, "send_to", None)  # (a kept answer: the system copies it)
        if send is not None and fd >= 0:
            send(fd)
            groups = ()
        for group in _or_cut_short(groups):
            if fd >= 0:
                write_pieces(fd, group)
                continue
            view = memoryview(b"".join(group))
            while view:  # (unbuffered, the stream writes what the pipe takes at a time)
                view = view[sys.stdout.buffer.write(view) or 0:]
        sys.stdout.flush()
    except BrokenPipeError:  # as the full path: status 1, and no complaint at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    if whole_process:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105  (contextlib imports functools and collections)
                stream.flush()  # (what the atexit functions wrote: the output is out)
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(0)
    sys.exit(0)


def _or_cut_short(groups: Iterable[list[bytes]]) -> Iterator[list[bytes]]:
    """``groups``; where making one fails (part of the answer written: it cannot go to
    the full path), a word on standard error and exit 1."""
    made = iter(groups)
    while True:
        try:
            group = next(made)
        except StopIteration:
            return
        except Exception as exc:  # (a read error, say)
            sys.stdout.flush()
            sys.stderr.write(f"error: the answer was cut short: {exc}\n")
            sys.stderr.flush()
            sys.exit(1)
        yield group


def write_pieces(fd: int, out: list[bytes]) -> None:
    """Write ``out``'s pieces to the file ``fd`` in order, as one output: a system call for
    up to :data:`PIECES_AT_ONCE` of them (``writev``), no joined copy made (at 100K tasks
    ``ready --json`` is 2.2 MB: joining and encoding it in a fresh process took ~5 ms, most
    of it the new memory's page faults)."""
    for start in range(0, len(out), PIECES_AT_ONCE):
        some = out[start:start + PIECES_AT_ONCE]
        done = os.writev(fd, some)
        for piece in some:  # (a short write: what is left of the group, piece by piece)
            if done >= len(piece):
                done -= len(piece)
                continue
            view = memoryview(piece)[done:]
            done = 0
            while view:
                view = view[os.write(fd, view):]


PIECES_AT_ONCE = 1024
"""Pieces written by one ``writev`` (the systems' ``IOV_MAX`` is 1024 at the least)."""


def answer(argv: list[str], env: Mapping[str, str], cwd: str | None) -> bytes | None:
    """What ``taskmill ARGV`` prints (standard output; it exits 0), or ``None`` when the
    full path is to answer (:func:`pieces`, joined)."""
    out = pieces(argv, env, cwd)
    return None if out is None else b"".join([b"".join(group) for group in out])


def pieces(argv: list[str], env: Mapping[str, str], cwd: str | None
           ) -> Iterable[list[bytes]] | None:
    """:func:`answer` as groups of pieces, in order. ``ready --json``'s are made as they are
    asked for (a group a batch of tasks: :func:`ready_json`), the first before this returns
    (any error up to there: ``None``); they hold the ledger's connection open until the
    last. A kept answer is a :class:`taskmill.cli.lean_kept.Kept` (:func:`emit` has the
    system send it from its file)."""
    try:
        command = _parse(argv, env)
        if command is None:
            return None
        found = find_ledger(os.getcwd() if cwd is None else cwd)
        if found is None:
            return None
        db, settings = found
        if command[0] == "ready" and settings.get("beads_compat") != "0":
            return None
        sql = sql_module()
        conn = sql.connect(db, mapped=True)
        if conn is None:
            return None
        handed = False  # (the connection: the groups' to close)
        try:
            if command[0] == "ready" and command[2]:
                streamed: Iterable[list[bytes]] | None
                if command[1] is None and env.get("TASKMILL_KEPT") != "0":  # (lean_kept's)
                    streamed = ready_json_kept(sql, conn,
                                               os.path.join(os.path.dirname(db), "run"))
                else:
                    streamed = ready_json(sql, conn, command[1])
                if streamed is None or hasattr(streamed, "send_to"):  # (kept: in its file)
                    return streamed
                made = _closing(iter(streamed), conn)
                handed = True
                return itertools.chain([next(made)], made)
            data = (sql.ready(conn, command[1], loads) if command[0] == "ready"
                    else sql.show(conn, command[1], loads))
        finally:
            if not handed:
                conn.close()
        if data is None:
            return None
        if command[2]:
            return [[encode(data)]]
        from .lean_table import text

        laid = text(command[0], data, env)
        return None if laid is None else [[laid]]
    except Exception:  # the full path runs it again, and reports any error itself
        return None


def _closing(groups: Iterator[list[bytes]], conn: sqlite3.Connection
             ) -> Iterator[list[bytes]]:
    """``groups``, ``conn`` closed after the last (or where they stop)."""
    try:
        yield from groups
    finally:
        conn.close()


def ready_json(sql: ModuleType, conn: sqlite3.Connection, limit: int | None
               ) -> Iterator[list[bytes]] | None:
    """``ready --json``'s output (:func:`encode` of ``sql.ready(conn, limit, loads)``) as
    groups of pieces, a group for each batch of tasks read (:func:`taskmill.ledger.lean.
    ready_blobs`: each task's JSON written by SQLite as UTF-8; a task with a JSON field set
    written here), so that no task becomes a dict or a string, nor the answer one string;
    ``None`` when a task has a ``defer_until`` (the store's)."""
    batches = sql.ready_blobs(conn, limit, loads)
    return None if batches is None else _json_groups(batches)


def _json_groups(batches: Iterator[list[bytes | dict[str, Any]]]) -> Iterator[list[bytes]]:
    between, end = b"[\n  ", b"[]\n"  # what goes before the next task, and at the end
    for items in batches:
        out = []
        for item in items:
            out.append(between)
            if item.__class__ is bytes:
                out.append(item)
                between, end = _CLOSED, b"\n  }\n]\n"
            else:
                out.append(_item_json(item))  # type: ignore[arg-type]
                between, end = b",\n  ", b"\n]\n"
        yield out
    yield [end]


def _item_json(item: dict[str, Any]) -> bytes:
    """A task's JSON as an item of ``ready --json``'s list, as the full path writes it (by
    :mod:`json` where :func:`_encode` is unsure: a float, say)."""
    try:
        text = _encode(item, "\n  ")
    except Unsure:
        import json

        text = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
    return text.encode("utf-8")


_CLOSED = b"\n  },\n  "
"""What follows a task's kept text in ``ready --json`` (its closing line, the next item's
start)."""


def ready_json_kept(sql: ModuleType, conn: sqlite3.Connection, run_dir: str
                    ) -> Iterable[list[bytes]] | None:
    """:func:`ready_json` of every ready task, kept as it is written, or the answer kept in
    ``run_dir`` when the ledger is still at the generation it was made at
    (:class:`taskmill.cli.lean_kept.Kept`, read from its file after the connection is
    closed). The generation is read first: a fresh answer, read after it, is at least as
    new as it."""
    from . import lean_kept

    generation = sql.generation(conn)
    kept = lean_kept.kept_answer(run_dir, lean_kept.READY, generation)
    if kept is not None:
        return kept
    out = ready_json(sql, conn, None)
    if out is None:
        return None
    return _kept_as_made(out, lean_kept.Keeper(run_dir, lean_kept.READY, generation, "-"))


def _kept_as_made(groups: Iterator[list[bytes]], keeper: Any) -> Iterator[list[bytes]]:
    """``groups``, each written to ``keeper`` as it is made; kept when the last is made,
    dropped if they stop before."""
    whole = False
    try:
        for group in groups:
            keeper.write_pieces(group)
            yield group
        whole = True
        keeper.done()
    finally:
        if not whole:
            keeper.drop()


def _parse(argv: list[str], env: Mapping[str, str]) -> tuple[str, Any, bool] | None:
    """``("ready", limit, json)`` or ``("show", id, json)``, or ``None`` for anything else
    (``json``: ``--json`` given, else the text form, :mod:`taskmill.cli.lean_table`)."""
    if env.get(SWITCH_ENV) == "0" or any(env.get(name) for name in FULL_PATH_ENV):
        return None
    if not argv or argv.count("--json") > 1:
        return None
    as_json = "--json" in argv
    # UTF-8 (the JSON is encoded strictly: text from SQLite holds no lone surrogate, so
    # the stream's own error handler never has anything to do); nothing goes to stderr
    encoding = getattr(sys.stdout, "encoding", None)
    if (not isinstance(encoding, str) or encoding.lower().replace("-", "") != "utf8"
            or not hasattr(sys.stdout, "buffer")):
        return None
    rest = [a for a in argv[1:] if a != "--json"]
    if argv[0] == "show" and len(rest) == 1 and not rest[0].startswith("-"):
        task_id = rest[0]
        if len(task_id) > ID_MAX or not task_id.strip() or CONTROL.intersection(task_id):
            return None
        return "show", task_id, as_json
    if argv[0] != "ready":
        return None
    if not rest:
        return "ready", None, as_json
    if len(rest) == 1 and rest[0].startswith("--limit="):
        rest = ["--limit", rest[0][len("--limit="):]]
    if len(rest) == 2 and rest[0] in ("-n", "--limit"):
        value = rest[1]
        if value.isascii() and value.isdigit() and value[0] != "0" and \
                int(value) <= LIMIT_MAX:
            return "ready", int(value), as_json
    return None


def find_ledger(cwd: str) -> tuple[str, dict[str, str]] | None:
    """The SQLite file of the repository around ``cwd`` and the settings cached for its
    config, when the lean path may read it."""
    here = os.path.realpath(cwd)
    while not os.path.exists(os.path.join(here, ".git")):
        up = os.path.dirname(here)
        if up == here:
            return None
        here = up
    if not os.path.isdir(os.path.join(here, ".git")):
        return None  # a linked worktree or submodule: the full path finds its ledger
    folder = os.path.join(here, ".taskmill")
    config = os.path.join(folder, "config.toml")
    db = os.path.join(folder, "taskmill.db")
    if not (os.path.isfile(config) and os.path.isfile(db)):
        return None
    roles = os.path.join(folder, "roles")
    if os.path.isdir(roles) and any(n.endswith(".toml") for n in os.listdir(roles)):
        return None  # a role's budget can hold tasks back
    from ..lean_config import read

    settings = read(os.path.join(folder, "run"), config)
    return None if settings is None else (db, settings)


def sql_module() -> ModuleType:
    """:mod:`taskmill.ledger.lean` (:func:`load_ledger_module`)."""
    return load_ledger_module("lean")


def load_ledger_module(stem: str) -> ModuleType:
    """``taskmill.ledger.<stem>``, loaded from its file without the package around it
    (whose ``__init__`` imports the whole ledger), by the import system's own frozen
    modules (:mod:`importlib.machinery` imports :mod:`warnings` and more), and with
    :mod:`_sqlite3` imported first as :func:`sqlite_module` imports it."""
    name = f"taskmill.ledger.{stem}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    sqlite_module()
    bootstrap: Any = sys.modules.get("_frozen_importlib")
    external: Any = sys.modules.get("_frozen_importlib_external")
    if bootstrap is None or external is None:  # pragma: no cover - not CPython
        import importlib.machinery

        bootstrap = external = importlib.machinery
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "ledger", f"{stem}.py")
    loader = external.SourceFileLoader(name, path)
    module = type(sys)(name)
    module.__spec__ = bootstrap.ModuleSpec(name, loader, origin=path)
    module.__file__ = path
    module.__loader__ = loader
    loader.exec_module(module)
    sys.modules[name] = module
    return module


def sqlite_module() -> ModuleType:
    """:mod:`_sqlite3` (sqlite3's C module), imported without :mod:`functools` where it
    can be.

    At import CPython's module takes ``functools.lru_cache``, to make each connection's
    statement cache (``lru_cache(maxsize)(connection)``); importing :mod:`functools` (and
    :mod:`collections`, :mod:`operator`, :mod:`reprlib`... with it) costs more than a lean
    command's own work. So while ``_sqlite3`` loads, ``functools`` is a stand-in whose
    ``lru_cache`` makes the cache as :func:`functools.lru_cache` does, from functools's own
    C part (``_functools._lru_cache_wrapper``); then the stand-in is gone, and a later
    ``import functools`` imports the real one. When functools is loaded already, or the
    stand-in does not serve, ``_sqlite3`` is imported as usual."""
    module = sys.modules.get("_sqlite3")
    if module is not None:
        return module
    if "functools" not in sys.modules:
        stand_in = type(sys)("functools")
        stand_in.lru_cache = _lru_cache  # type: ignore[attr-defined]
        sys.modules["functools"] = stand_in
        try:
            import _sqlite3

            return _sqlite3
        except Exception:  # (another Python's module asked for more: the real functools)
            pass
        finally:
            if sys.modules.get("functools") is stand_in:
                del sys.modules["functools"]
    import _sqlite3

    return _sqlite3


def _lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Any], Any]:
    """``functools.lru_cache(maxsize, typed)`` for a callable, as functools makes it."""
    c_part: Any = __import__("_functools")
    if isinstance(maxsize, int) and maxsize < 0:
        maxsize = 0

    def decorate(function: Any) -> Any:
        return c_part._lru_cache_wrapper(function, maxsize, typed, _cache_info)

    return decorate


def _cache_info(hits: int, misses: int, maxsize: int | None, currsize: int
                ) -> tuple[int, int, int | None, int]:
    return hits, misses, maxsize, currsize


def loads(text: str) -> Any:
    import json

    return json.loads(text)


# -- JSON as ``json.dumps(data, ensure_ascii=False, indent=2)`` writes it --------------------

_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r",
                 ord("\t"): "\\t", ord("\b"): "\\b", ord("\f"): "\\f"})


def _py_quoted(text: str) -> str:
    """``text`` as a JSON string, as ``json`` writes it with ``ensure_ascii=False``."""
    return '"' + str.translate(text, _ESCAPES) + '"'


def _bind_quoted(text: str) -> str:
    """``text`` quoted by :data:`_quoted`, bound at the first string to json's own C function
    for it (importing json itself costs ~5 ms: it imports re; its C module, ~0.3 ms, is
    imported only when a string is to be written here: not for the tables, nor for a
    ``ready --json`` that SQLite writes), or on another Python to :func:`_py_quoted`."""
    global _quoted
    try:
        from _json import encode_basestring as c_quoted
    except ImportError:  # (another Python: the same by translation)
        c_quoted = _py_quoted
    _quoted = c_quoted
    return c_quoted(text)


_quoted: Callable[[str], str] = _bind_quoted


def encode(data: Any) -> bytes:
    """``json.dumps(data, ensure_ascii=False, indent=2)`` and a line break, in UTF-8: by hand
    for the strings, integers, booleans, nulls, lists and objects of a few tasks (importing
    :mod:`json` costs more than writing them), as the full path writes many tasks (orjson,
    :func:`taskmill.cli.context.write_json_items`) from :data:`BIG` on, and by :mod:`json`
    itself for anything else (a float, say)."""
    if isinstance(data, list) and len(data) >= BIG:
        import io

        from .context import write_json_items

        buffer = io.BytesIO()
        write_json_items(buffer, data)
        return buffer.getvalue()
    try:
        text = _encode(data, "\n")
    except Unsure:
        import json

        text = json.dumps(data, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


_KEYS: dict[str, str] = {}
"""Each key as written (``"key": ``)."""


def _encode(value: Any, newline: str) -> str:
    """``value`` as JSON, its lines after the first indented by ``newline`` (a line break
    and spaces)."""
    cls = value.__class__
    if cls is str:
        return _quoted(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if cls is int:
        return int.__repr__(value)
    inner = newline + "  "
    if cls is dict:
        if not value:
            return "{}"
        parts = []
        keys = _KEYS
        quoted = _quoted
        for key, item in value.items():
            written = keys.get(key)
            if written is None:
                if key.__class__ is not str:
                    raise Unsure("a key that is not a string")
                written = keys[key] = _quoted(key) + ": "
            c = item.__class__  # (the common values inline: a task has ~26 of them)
            parts.append(written + (quoted(item) if c is str
                                    else "null" if item is None
                                    else "true" if item is True
                                    else "false" if item is False
                                    else int.__repr__(item) if c is int
                                    else "[]" if c is list and not item
                                    else _encode(item, inner)))
        return "{" + inner + ("," + inner).join(parts) + newline + "}"
    if cls is list:
        if not value:
            return "[]"
        return "[" + inner + ("," + inner).join([_encode(v, inner) for v in value]) + \
            newline + "]"
    raise Unsure(f"a {cls.__name__}")
