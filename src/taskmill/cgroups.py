"""A cgroup per agent turn and per check, holding ``[sandbox] memory_mb`` and
``max_processes`` (Linux).

Only when a limit is configured. :func:`detect` finds, once per run, the way this machine
offers (best first):

* ``cgroup v2``: the unified hierarchy (``cgroup.controllers`` at the mount root), our own
  group from the ``0::/path`` line of ``/proc/self/cgroup``, *delegated*: its
  ``cgroup.subtree_control`` already enables ``memory`` and ``pids`` (the ones the limits
  need), so children can be made under it. A child gets ``memory.max``,
  ``memory.swap.max = 0`` and ``pids.max``; afterwards ``memory.events`` (``oom_kill``) and
  ``pids.events`` (``max``) say whether a limit was hit, ``cgroup.kill`` ends what is left.
* ``cgroup v1``: the ``memory`` and ``pids`` hierarchies (each found as
  ``<root>/<controller>``, our own group in each from ``/proc/self/cgroup``) with a child
  under our group in each: ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``
  where swap is accounted, so swap cannot dodge it) and ``pids.max``; afterwards
  ``memory.oom_control`` (``oom_kill``) and ``pids.events`` (``max``); leftovers are killed
  one by one.
* ``systemd-run scope``: v2 without delegation, where ``systemd-run --user --scope`` works:
  the command is started under ``systemd-run --user --scope --quiet -p MemoryMax=..M -p
  MemorySwapMax=0 -p TasksMax=N --``; systemd removes the scope when the command ends. Whether
  a limit was hit is not read back (the scope is gone by then).
* otherwise ``setrlimit`` inside the sandbox's init, as before (:meth:`Sandbox.rlimits`).

A command joins its groups without ``preexec_fn``: the ``/bin/sh -c`` wrapper it is started
under writes its own pid (``$$``) into each group's ``cgroup.procs`` before it ``exec``\\ s
(:attr:`CommandGroup.prelude`), so bubblewrap, the PID namespace's init and everything in
them inherit the groups. After the command, :meth:`CommandGroup.close` reads whether a limit
was hit, kills what is left and removes the groups. Groups are named
``taskmill-<pid namespace>-<pid>-<token>``: a run finds those a killed run of its own PID
namespace left (their owner is gone) and removes them (:meth:`Limiter.sweep_stale`).

Nothing here reads globals: the cgroup mount root and the text of ``/proc/self/cgroup`` are
passed in (tests run the file logic against a fake tree).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
"""Where cgroup file systems are mounted (passed in; this is the default of callers)."""
PREFIX = "taskmill-"
KILL_WAIT_S = 2.0
PROBE_TIMEOUT_S = 10.0

V1, V2, SYSTEMD, SETRLIMIT = "cgroup v1", "cgroup v2", "systemd-run scope", "setrlimit"
CONTROLLERS = {"memory_mb": "memory", "max_processes": "pids"}


@dataclass(frozen=True)
class Limits:
    """``[sandbox] memory_mb`` and ``max_processes``."""

    memory_mb: int | None = None
    max_processes: int | None = None

    def __bool__(self) -> bool:
        return self.memory_mb is not None or self.max_processes is not None

    def controllers(self) -> tuple[str, ...]:
        """The cgroup controllers these limits need."""
        return tuple(c for key, c in CONTROLLERS.items() if getattr(self, key) is not None)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k in CONTROLLERS if (v := getattr(self, k)) is not None}


class CgroupFS:
    """The file operations on a cgroup tree (the kernel's by default; a test's fake tree
    overrides :meth:`rmdir`, since a real group's control files vanish with it)."""

    def read(self, path: Path) -> str:
        return path.read_text(encoding="ascii", errors="replace")

    def write(self, path: Path, text: str) -> None:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(text)

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def rmdir(self, path: Path) -> None:
        path.rmdir()


def _own_groups(proc_cgroup: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; the unified hierarchy is ``""``."""
    found: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        for name in names.split(",") if names else [""]:
            found[name] = path
    return found


def _group_dir(mount: Path, path: str) -> Path:
    """Our group under ``mount``: ``mount/path``, or ``mount`` itself when only our own
    group is mounted there (a container's view without a cgroup namespace)."""
    inside = mount / path.lstrip("/")
    return inside if inside.is_dir() else mount


def _v1_mount(root: Path, controller: str) -> Path | None:
    direct = root / controller
    if direct.is_dir():
        return direct
    with contextlib.suppress(OSError):
        for entry in root.iterdir():  # co-mounted hierarchies: cpu,cpuacct
            if entry.is_dir() and controller in entry.name.split(","):
                return entry
    return None


@dataclass(frozen=True)
class Limiter:
    """How this run applies :class:`Limits` to each command (see the module docstring)."""

    limits: Limits
    via: str
    """:data:`V2`, :data:`V1`, :data:`SYSTEMD` or :data:`SETRLIMIT`."""
    parents: tuple[tuple[str, Path], ...] = ()
    """(controller, the group children are made under): v1 one per controller, v2 one
    (``""``)."""
    systemd_run: str | None = None
    note: str = ""
    """Why no cgroup is used (for :data:`SETRLIMIT`)."""
    fs: CgroupFS = field(default_factory=CgroupFS)
    owner: str = ""
    """``<pid namespace>-<pid>``: names this process's groups."""

    @property
    def cgroup(self) -> bool:
        """Whether the limits are held by a cgroup (not setrlimit)."""
        return self.via != SETRLIMIT

    def open(self) -> CommandGroup:
        """The groups of one command (made now; :meth:`CommandGroup.close` removes them).
        Raises OSError when they cannot be made."""
        if self.via == SYSTEMD:
            assert self.systemd_run is not None
            props = []
            if self.limits.memory_mb is not None:
                props += ["-p", f"MemoryMax={self.limits.memory_mb}M", "-p", "MemorySwapMax=0"]
            if self.limits.max_processes is not None:
                props += ["-p", f"TasksMax={self.limits.max_processes}"]
            return CommandGroup(self, (), prefix=(self.systemd_run, "--user", "--scope",
                                                  "--quiet", *props, "--"))
        if self.via not in (V1, V2):
            return CommandGroup(self, ())
        name = f"{PREFIX}{self.owner}-{secrets.token_hex(4)}"
        made: list[tuple[str, Path]] = []
        try:
            for controller, parent in self.parents:
                group = parent / name
                self.fs.mkdir(group)
                made.append((controller, group))
                self._set_limits(controller, group)
        except OSError:
            CommandGroup(self, tuple(made)).close()
            raise
        return CommandGroup(self, tuple(made))

    def _set_limits(self, controller: str, group: Path) -> None:
        mem, procs = self.limits.memory_mb, self.limits.max_processes
        write = self.fs.write
        if self.via == V2:
            if mem is not None:
                write(group / "memory.max", str(mem * 1024 * 1024))
                if (group / "memory.swap.max").exists():
                    write(group / "memory.swap.max", "0")
            if procs is not None:
                write(group / "pids.max", str(procs))
        elif controller == "memory" and mem is not None:
            write(group / "memory.limit_in_bytes", str(mem * 1024 * 1024))
            if (group / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                write(group / "memory.memsw.limit_in_bytes", str(mem * 1024 * 1024))
        elif controller == "pids" and procs is not None:
            write(group / "pids.max", str(procs))

    def sweep_stale(self, alive: Callable[[int], bool] | None = None) -> list[Path]:
        """Remove the groups a killed run of this PID namespace left (their owner pid is
        gone), killing what is still in them. Returns those removed."""
        alive = alive or _pid_alive
        namespace = self.owner.rsplit("-", 1)[0]
        removed = []
        for _, parent in self.parents if self.via in (V1, V2) else ():
            with contextlib.suppress(OSError):
                for entry in parent.iterdir():
                    rest = entry.name[len(PREFIX):].split("-")
                    if not entry.name.startswith(PREFIX) or len(rest) != 3 \
                            or rest[0] != namespace or not rest[1].isdigit() \
                            or alive(int(rest[1])) or not entry.is_dir():
                        continue
                    if _remove_tree(self.fs, entry, v2=self.via == V2):
                        removed.append(entry)
        return removed

    def describe(self) -> str:
        """``limits_via`` of the sandbox's description."""
        if self.via == SETRLIMIT:
            return ("setrlimit: memory_mb as RLIMIT_DATA of each process, max_processes as "
                    "RLIMIT_NPROC (per user; not for root)")
        return self.via

    def warning(self) -> str:
        """The one line a run gives when its limits are only set with setrlimit."""
        return (f"[sandbox] limits ({', '.join(self.limits.as_dict())}) are set with "
                f"setrlimit only, not a cgroup ({self.note}): memory_mb limits each "
                "process's data segment (not their sum), max_processes counts all of the "
                "user's processes (and does nothing for root)")


@dataclass
class CommandGroup:
    """The cgroups of one command."""

    limiter: Limiter
    groups: tuple[tuple[str, Path], ...]
    prefix: tuple[str, ...] = ()
    """Put before the command (``systemd-run ... --``)."""
    limit_hit: dict[str, int] | None = None
    """After :meth:`close`: the limits the command hit (None: none, or not known)."""
    _closed: bool = False

    @property
    def prelude(self) -> str:
        """Shell code the command's ``/bin/sh -c`` wrapper runs first: its own pid into
        every group (or it exits 125 saying why)."""
        if not self.groups:
            return ""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))}"
                            for _, g in self.groups)
        return (f"{{ {joins}; }} || {{ echo 'taskmill: cannot join the command'\"'\"'s "
                "cgroup' >&2; exit 125; }; ")

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` (started through a shell that runs :attr:`prelude`) with
        :attr:`prefix`."""
        return [*self.prefix, *argv]

    def read_hits(self) -> dict[str, int] | None:
        """What the limits did to the command so far."""
        hits: dict[str, int] = {}
        limits = self.limiter.limits
        for controller, group in self.groups:
            if controller in ("memory", "") and limits.memory_mb is not None:
                stats = self._counters(group / ("memory.events" if self.limiter.via == V2
                                                else "memory.oom_control"))
                if stats.get("oom_kill", 0) > 0:
                    hits["memory_mb"] = limits.memory_mb
                    hits["oom_kills"] = stats["oom_kill"]
            if controller in ("pids", "") and limits.max_processes is not None:
                stats = self._counters(group / "pids.events")
                if stats.get("max", 0) > 0:
                    hits["max_processes"] = limits.max_processes
                    hits["fork_failures"] = stats["max"]
        return hits or None

    def _counters(self, path: Path) -> dict[str, int]:
        try:
            text = self.limiter.fs.read(path)
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                found[key] = int(value)
        return found

    def close(self) -> dict[str, int] | None:
        """Read :attr:`limit_hit`, kill what is left in the groups and remove them (once;
        a group that cannot be removed is left for :meth:`Limiter.sweep_stale`)."""
        if self._closed:
            return self.limit_hit
        self._closed = True
        self.limit_hit = self.read_hits()
        for _, group in self.groups:
            _remove_tree(self.limiter.fs, group, v2=self.limiter.via == V2)
        return self.limit_hit


def limit_message(hit: Mapping[str, int] | None) -> str:
    """The line an agent gets when its command hit a limit ('' when none)."""
    if not hit:
        return ""
    lines = []
    if "memory_mb" in hit:
        lines.append(f"the command was killed: it went over the sandbox's memory limit of "
                     f"{hit['memory_mb']} MB ([sandbox] memory_mb)")
    if "max_processes" in hit:
        lines.append(f"the command hit the sandbox's process limit of {hit['max_processes']} "
                     "([sandbox] max_processes): it could not start more processes")
    return "\n".join(lines)


def _procs(fs: CgroupFS, group: Path) -> list[int]:
    try:
        return [int(p) for p in fs.read(group / "cgroup.procs").split() if p.isdigit()]
    except OSError:
        return []


def _remove_tree(fs: CgroupFS, group: Path, *, v2: bool) -> bool:
    """Kill every process in ``group`` and the groups under it, then remove them (deepest
    first). False when one could not be removed."""
    children = []
    with contextlib.suppress(OSError):
        children = [e for e in group.iterdir() if e.is_dir()]
    ok = all([_remove_tree(fs, child, v2=v2) for child in children])
    if v2 and (group / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            fs.write(group / "cgroup.kill", "1")
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        pids = _procs(fs, group)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            fs.rmdir(group)
            return ok
        except FileNotFoundError:
            return ok
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
        time.sleep(0.005)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = "0"
    return f"{namespace}-{os.getpid()}"


def systemd_scope_works(systemd_run: str, env: Mapping[str, str]) -> str:
    """'' when ``systemd-run --user --scope`` runs a command with a memory limit here,
    else why not."""
    try:
        proc = subprocess.run([systemd_run, "--user", "--scope", "--quiet", "-p",
                               "MemoryMax=64M", "--", "true"], env=dict(env),
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def detect(limits: Limits, *, root: Path, proc_cgroup: str, env: Mapping[str, str],
           fs: CgroupFS | None = None, owner: str | None = None,
           systemd_probe: Callable[[str, Mapping[str, str]], str] = systemd_scope_works
           ) -> Limiter:
    """How ``limits`` are applied here (see the module docstring). ``root``: where cgroup
    file systems are mounted; ``proc_cgroup``: the text of ``/proc/self/cgroup``."""
    fs = fs or CgroupFS()
    owner = owner or _owner()
    need = limits.controllers()
    own = _own_groups(proc_cgroup)
    why = ""
    if (root / "cgroup.controllers").is_file():  # the unified hierarchy alone: v2
        if "" not in own:
            why = "no cgroup v2 line (0::/path) in /proc/self/cgroup"
        else:
            group = _group_dir(root, own[""])
            try:
                enabled = fs.read(group / "cgroup.subtree_control").split()
            except OSError as exc:
                enabled, why = [], f"cannot read {group / 'cgroup.subtree_control'}: {exc}"
            missing = [c for c in need if c not in enabled]
            if not why and not missing:
                found = Limiter(limits, V2, (("", group),), fs=fs, owner=owner)
                why = _probe(found)
                if not why:
                    return found
            elif not why:
                why = (f"cgroup v2: our group {group} does not delegate "
                       f"{' and '.join(missing)} (its cgroup.subtree_control)")
            systemd_run = shutil.which("systemd-run", path=env.get("PATH", os.defpath))
            if systemd_run is not None:
                failed = systemd_probe(systemd_run, env)
                if not failed:
                    return Limiter(limits, SYSTEMD, systemd_run=systemd_run, fs=fs,
                                   owner=owner)
                why += f"; systemd-run --user --scope does not work: {failed}"
    else:
        parents: list[tuple[str, Path]] = []
        for controller in need:
            mount = _v1_mount(root, controller)
            if mount is None or controller not in own:
                why = f"no cgroup v1 {controller} hierarchy under {root}"
                break
            parents.append((controller, _group_dir(mount, own[controller])))
        if not why:
            found = Limiter(limits, V1, tuple(parents), fs=fs, owner=owner)
            why = _probe(found)
            if not why:
                return found
    return Limiter(limits, SETRLIMIT, note=why, fs=fs, owner=owner)


def _probe(limiter: Limiter) -> str:
    """'' when a group with the limits can be made (and removed) here, else why not."""
    try:
        limiter.open().close()
    except OSError as exc:
        return f"{limiter.via}: cannot make a group with the limits: {exc}"
    return ""


_cache: dict[tuple[Limits, Path], Limiter] = {}
_cache_lock = threading.Lock()


def limiter(limits: Limits, *, root: Path, proc_cgroup: str,
            env: Mapping[str, str]) -> Limiter | None:
    """:func:`detect`, once per process for each ``limits`` (None when none is set)."""
    if not limits:
        return None
    with _cache_lock:
        found = _cache.get((limits, root))
        if found is None:
            found = _cache[(limits, root)] = detect(limits, root=root,
                                                    proc_cgroup=proc_cgroup, env=env)
    return found


def limits_info(found: Limiter) -> dict[str, Any]:
    """``limits`` and ``limits_via`` for a sandbox's description."""
    return {"limits": found.limits.as_dict(), "limits_via": found.describe()}
