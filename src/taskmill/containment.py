"""Nothing an agent turn or a check command starts may outlive it.

Two ways, chosen once per process by :func:`containment` (``[run] contain``):

* ``pidns``: the command runs in a PID namespace of its own
  (``unshare --pid --fork --kill-child``, with ``--user --map-current-user``
  when not root), under a tiny init (:data:`taskmill.sandbox_init.INIT`, pid 1 of the
  namespace) that runs the
  command, forwards SIGTERM/SIGINT/SIGHUP to every process of the namespace and exits with
  the command's status. When the command exits, or ``unshare`` is killed, the init dies and
  the kernel kills every process left in the namespace, ``setsid`` daemons included.
* ``group``: where namespaces are not available (user namespaces disabled, no ``unshare``,
  not Linux): the command's process group is killed, then :func:`sweep` kills every process
  whose environment carries the command's marker (``TASKMILL_TURN_ID``, Linux ``/proc``).
  A process that clears its environment and leaves the group escapes this one.

Every contained command gets a fresh ``TASKMILL_TURN_ID`` in its environment either way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInput
from .sandbox_init import INIT

if TYPE_CHECKING:
    from .cgroups import CommandGroup, Limiter
    from .sandbox import Sandbox

MODES = ("auto", "pidns", "group")
MARKER_VAR = "TASKMILL_TURN_ID"
PROBE_TIMEOUT_S = 10.0

NO_CONF = "{}"
"""The init's first argument (:mod:`.sandbox_init`): no limits, no bridges."""


@dataclass(frozen=True)
class Containment:
    mode: str
    """``pidns`` or ``group``."""
    prefix: tuple[str, ...] = ()
    """The ``unshare`` command line a ``pidns`` command starts with."""
    note: str = ""
    """Why this mode is in force (e.g. why ``pidns`` is not available)."""
    sandbox: Sandbox | None = None
    """When set, turns and checks run in it instead (:mod:`taskmill.sandbox`: a PID
    namespace of its own too), with the paths each command may see given at start."""
    limiter: Limiter | None = None
    """When ``[sandbox]`` sets limits: how each command gets them (:mod:`taskmill.cgroups`)."""

    def command(self, argv: Sequence[str], prelude: str = "") -> list[str]:
        """``argv`` as it is started under this containment; ``prelude``: shell code run
        first (joining the command's cgroup), by a ``/bin/sh -c`` wrapper that then execs."""
        found = list(argv)
        if self.mode == "pidns":
            found = [*self.prefix, sys.executable, "-I", "-S", "-c", INIT, NO_CONF, *found]
        if prelude:
            found = ["/bin/sh", "-c", prelude + 'exec "$0" "$@"', *found]
        return found

    def open_group(self) -> CommandGroup | None:
        """The cgroup(s) of one command, when the limits are held by one (else None).
        Raises OSError saying which group could not be made."""
        if self.limiter is None or not self.limiter.cgroup:
            return None
        try:
            return self.limiter.open()
        except OSError as exc:
            # a plain OSError (with an errno it would be FileNotFoundError, PermissionError:
            # a missing or unexecutable command to the callers)
            raise OSError(f"cannot make the command's cgroup ({self.limiter.via}, [sandbox] "
                          f"limits): {exc}") from exc

    def describe(self) -> str:
        if self.sandbox is not None:
            return ("sandbox: each agent turn and check runs in a bubblewrap sandbox with a "
                    "PID namespace of its own")
        what = {"pidns": "each agent turn and check runs in a PID namespace of its own",
                "group": "process group kill plus a sweep of processes carrying the turn's "
                         "marker"}[self.mode]
        return f"{self.mode}: {what}" + (f" ({self.note})" if self.note else "")


def new_marker() -> str:
    return secrets.token_hex(8)


def _candidates(unshare: str) -> list[tuple[str, ...]]:
    # no --mount-proc: the namespace keeps the host's /proc (as agents had before), so the
    # pids a process reads there are the host's, and no mount namespace is needed
    base = ("--pid", "--fork", "--kill-child")
    user = (unshare, "--user", "--map-current-user", *base)
    return [(unshare, *base), user] if os.geteuid() == 0 else [user]


def _works(prefix: Sequence[str], env: Mapping[str, str]) -> str:
    """'' when ``prefix`` runs a command as pid 1 of a new namespace, else why not."""
    argv = [*prefix, sys.executable, "-I", "-S", "-c", INIT, NO_CONF, sys.executable, "-I",
            "-S", "-c",
            "import os, sys; sys.exit(0 if os.getppid() == 1 else 3)"]
    try:
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


_cache: dict[tuple[str, str], Containment] = {}
_cache_lock = threading.Lock()


def containment(mode: str = "auto", env: Mapping[str, str] | None = None) -> Containment:
    """The containment for ``mode`` (``auto``: ``pidns`` where it works, else ``group``),
    probed once per process. ``pidns`` asked for and not available is an error."""
    if mode not in MODES:
        raise InvalidInput(f"[run] contain = {mode!r} is not a containment mode",
                           hint="use one of: " + ", ".join(repr(m) for m in MODES))
    env = os.environ if env is None else env
    path = env.get("PATH", os.defpath)
    with _cache_lock:
        found = _cache.get((mode, path))
        if found is None:
            found = _probe(mode, env)
            _cache[(mode, path)] = found
    if mode == "pidns" and found.mode != "pidns":
        raise InvalidInput(f"[run] contain = \"pidns\" is not available here: {found.note}",
                           hint='set [run] contain = "auto" (or "group") in '
                                ".taskmill/config.toml")
    return found


def _probe(mode: str, env: Mapping[str, str]) -> Containment:
    if mode == "group":
        return Containment("group", note="as configured")
    if not sys.platform.startswith("linux"):
        return Containment("group", note="PID namespaces need Linux")
    unshare = shutil.which("unshare", path=env.get("PATH", os.defpath))
    if unshare is None:
        return Containment("group", note="no unshare command (util-linux) on PATH")
    why = ""
    for prefix in _candidates(unshare):
        why = _works(prefix, env)
        if not why:
            return Containment("pidns", prefix)
    return Containment("group", note=f"unshare does not work here: {why}")


def resolve_command(argv0: str, env: Mapping[str, str], cwd: Path) -> str:
    """``argv0`` as the path that would be executed with ``env``'s PATH in ``cwd``.

    Raises FileNotFoundError when there is none, PermissionError when it is not
    executable (what starting it directly would have raised)."""
    if os.sep in argv0:
        path = cwd / argv0
        if not path.is_file():
            raise FileNotFoundError(argv0)
        if not os.access(path, os.X_OK):
            raise PermissionError(f"{argv0} is not executable")
        return str(path)
    denied = False
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        path = (cwd / (folder or ".")) / argv0
        if path.is_file():
            if os.access(path, os.X_OK):
                return str(path)
            denied = True
    if denied:
        raise PermissionError(f"{argv0} is not executable")
    raise FileNotFoundError(argv0)


def sweep(marker: str, *, rounds: int = 20) -> int:
    """SIGKILL every process whose environment holds ``TASKMILL_TURN_ID=marker`` (they may
    fork meanwhile: repeated until none is left). Returns how many were killed."""
    needle = f"{MARKER_VAR}={marker}".encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    me = os.getpid()
    killed: set[int] = set()
    for round_ in range(rounds):
        if round_:
            time.sleep(0.01)  # let the last round's SIGKILLs land
        found = []
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        alive = [pid for pid in found if _alive(pid)]
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
    return len(killed)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
