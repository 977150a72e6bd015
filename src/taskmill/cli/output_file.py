"""A file a command writes where the user says (``export -o FILE``): whole, or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from ..errors import InvalidInput

T = TypeVar("T")


def write_output(path: Path, write: Callable[[TextIO], T]) -> T:
    """What ``write`` writes to the open text file, in ``path``; its result.

    A regular file (or a new one) is replaced at once, whole, from a temporary file of its
    own beside it (never a file of the user's, such as ``FILE.tmp``), keeping its mode: a
    write that fails (a full disk, an interrupt) leaves it as it was. A symlink's file is
    replaced, the link kept. Anything else (``/dev/stdout``, a pipe, a device) is written
    into as it is. Raises InvalidInput naming the path and what failed."""
    try:
        try:
            mode: int | None = path.stat().st_mode  # (a symlink's file's)
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise InvalidInput(f"{path} is a folder", hint="give a file's path")
            with path.open("w", encoding="utf-8") as fh:  # (a pipe, a device: as it is)
                return write(fh)
        target = path.resolve()
        tmp, fd = _temporary_beside(target)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                result = write(fh)
            if mode is not None:
                os.chmod(tmp, stat.S_IMODE(mode))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return result
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}",
                           hint="nothing was written there; check the folder exists and has"
                                " room") from None


def _temporary_beside(target: Path) -> tuple[str, int]:
    """A new file in ``target``'s folder, named after it (created with the mode the umask
    gives a new file, as ``open`` would), and its descriptor."""
    for _ in range(100):
        tmp = str(target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp"))
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")
