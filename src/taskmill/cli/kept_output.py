"""``list`` and ``blocked`` answered from what the last same command printed, while the
ledger is unchanged (:mod:`taskmill.cli.lean_kept`): as JSON, and as tables printed to
anything but a terminal (a pipe, a file), the table's look (width, colours, characters)
being part of what the answer is kept under."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import lean_kept
from .context import Ctx, emit_json_texts, utf8

if TYPE_CHECKING:
    from ..project import Project

LOOK_ENV = ("COLUMNS", "LINES", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR",
            "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")
"""The environment rich reads to lay out and colour a table."""


def kept_json_texts(ctx: Ctx, project: Project, name: str, key: dict[str, Any],
                    texts: Callable[[], Iterable[str]]) -> bool:
    """:func:`emit_json_texts` of ``texts()``, or the answer kept from the last time when
    the ledger is still at the generation it was read at and ``key`` (what else the answer
    depends on) is the same; a fresh answer is kept as it is written. False, having written
    nothing, as :func:`emit_json_texts`."""
    stream = sys.stdout
    out = getattr(stream, "buffer", None)
    found = _kept(ctx, project, name, key)
    if out is None or not utf8(stream) or found is None:
        return emit_json_texts(texts())
    run_dir, kind, generation, key_text = found
    stream.flush()
    if lean_kept.copy(run_dir, kind, generation, key_text, out):
        out.flush()
        return True
    keeper = lean_kept.Keeper(run_dir, kind, generation, key_text)
    try:
        emit_json_texts(texts(), tee=keeper.write)
    except BaseException:
        keeper.drop()
        raise
    keeper.done()
    return True


def kept_text(ctx: Ctx, project: Project, name: str, key: dict[str, Any],
              print_it: Callable[[], None]) -> None:
    """``print_it()`` (a table printed to standard output), or what it printed the last time
    when the ledger is at the same generation, ``key`` is the same and so is the look of
    the output (:data:`LOOK_ENV`, the terminal sizes); on a terminal always afresh."""
    stream = sys.stdout
    out = getattr(stream, "buffer", None)
    look = _look(stream)
    found = None if look is None else _kept(ctx, project, name, {**key, "look": look})
    if out is None or found is None:
        print_it()
        return
    run_dir, kind, generation, key_text = found
    stream.flush()
    if lean_kept.copy(run_dir, kind, generation, key_text, out):
        out.flush()
        return
    keeper = lean_kept.Keeper(run_dir, kind, generation, key_text)
    tee = _Tee(stream, keeper)
    sys.stdout = tee
    try:
        print_it()
        tee.flush()
    except BaseException:
        keeper.drop()
        raise
    finally:
        sys.stdout = stream
    keeper.done()


def _kept(ctx: Ctx, project: Project, name: str, key: dict[str, Any]
          ) -> tuple[str, str, int, str] | None:
    """(run directory, file name, generation, key as text) of the answer ``name`` under
    ``key``, or ``None`` where nothing is kept (``TASKMILL_KEPT=0``, a store without a
    generation). The generation is read here, before the answer."""
    if not lean_kept.enabled(ctx.env):
        return None
    generation = project.ledger.generation()
    if generation is None:
        return None
    import zlib

    from ..json_text import dumps_sorted_compact

    key_text = dumps_sorted_compact(key).decode("utf-8")
    return (str(project.paths.run_dir), f"{name}-{zlib.crc32(key_text.encode()):08x}",
            generation, key_text)


def _look(stream: Any) -> dict[str, Any] | None:
    """What the look of a table printed to ``stream`` depends on, or ``None`` on a
    terminal (or a stream that is not a file: printed afresh)."""
    try:
        if stream.isatty():
            return None
        encoding = stream.encoding
    except (AttributeError, ValueError, OSError):
        return None
    sizes: list[list[int] | None] = []
    for fd in (0, 1, 2):  # (rich asks each for its size)
        try:
            sizes.append(list(os.get_terminal_size(fd)))
        except (OSError, ValueError):
            sizes.append(None)
    return {"env": {name: os.environ.get(name) for name in LOOK_ENV},
            "encoding": str(encoding), "sizes": sizes, "rich": _rich_stamp()}


def _rich_stamp() -> list[int] | None:
    """The size and time of rich's installed ``__init__`` (another rich may lay a table out
    otherwise), found without importing it."""
    from importlib.util import find_spec

    spec = find_spec("rich")
    if spec is None or spec.origin is None:
        return None
    try:
        info = os.stat(spec.origin)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


class _Tee(io.TextIOBase):
    """Standard output while a table is printed: each write goes on to ``stream`` and,
    encoded as ``stream`` encodes it, to ``keeper``."""

    def __init__(self, stream: Any, keeper: lean_kept.Keeper) -> None:
        super().__init__()
        self.stream = stream
        self.keeper = keeper

    def write(self, text: str) -> int:
        written: int = self.stream.write(text)
        self.keeper.write(text.encode(self.stream.encoding, self.stream.errors or "strict"))
        return written

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self.stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(self.stream.encoding)

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors  # type: ignore[no-any-return]
