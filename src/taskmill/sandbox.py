"""A sandbox for every agent turn and every check command (Linux, bubblewrap).

The command runs under ``bwrap`` (``[sandbox]`` in ``.taskmill/config.toml``):

* the root filesystem read-only (``--ro-bind / /``), a fresh ``/dev``, a private tmpfs
  ``/tmp`` (``TMPDIR=/tmp``), and ``/proc`` of a new PID namespace: only the sandbox's own
  processes are visible (taskmill's ``/proc/PID/environ`` is not);
* hidden (an empty read-only tmpfs over them): the user's checkout (the repository root),
  the ledger directory (``.taskmill``), the mill's worktree pool and git's ``worktrees/``
  entries (other slots), the user's real ``HOME`` and ``/run`` (sockets of system daemons);
* shown again, per command (:class:`Mounts`): writable the task's worktree, the agent's
  HOME and the turn's state directory (a check: its worktree and the checks' HOME); read-only
  the worktree's ``.git`` link, the slot's entry under git's ``worktrees/`` and git's common
  directory (objects, refs, config, hooks), so the agent cannot remove ``.git``, move refs,
  write objects or install hooks: taskmill commits for it; git's config is shown as a copy
  without credentials (:mod:`taskmill.git_config_scrub`) in a ``.git`` folder of the
  sandbox's own (a tmpfs holding the copy and binds of the real entries, so that no rename
  of the host's can show the real config: :meth:`Sandbox._rebuild`);
* no network (``--unshare-net``: only a loopback of its own), except the model proxy: when a
  command has one, its unix socket is bound in and pid 1 forwards ``127.0.0.1:PORT`` inside
  the sandbox to it (:mod:`taskmill.sandbox_init`), so one ``base_url`` works inside and
  outside. A ``network`` allowlist in the config keeps the namespace: the run starts an
  HTTP CONNECT proxy that tunnels only to the listed ``host:port`` (:mod:`taskmill.netproxy`),
  pid 1 bridges a second loopback port to its socket, and the command gets ``HTTPS_PROXY``,
  ``HTTP_PROXY`` (and lower case) = ``http://127.0.0.1:PORT``, ``NO_PROXY=127.0.0.1,localhost``;
* no capabilities (``--cap-drop ALL``, which matters when taskmill runs as root), separate
  IPC and UTS namespaces, killed with taskmill (``--die-with-parent``);
* the limits (``memory_mb``, ``max_processes``) held by a cgroup of the command's own that
  the outer ``/bin/sh`` joins before it execs bubblewrap (:mod:`taskmill.cgroups`);
* a tiny init as pid 1 (``--as-pid-1``): it forwards SIGTERM to the namespace, sets the
  limits where no cgroup can hold them (``memory_mb`` -> ``RLIMIT_DATA`` of each process,
  ``max_processes`` -> ``RLIMIT_NPROC``), and when the command exits the kernel kills what
  is left.

``[sandbox] enabled``: ``"auto"`` (default) sandboxes where bubblewrap works and otherwise
runs unsandboxed with a warning; ``true`` refuses to run without it; ``false`` turns it off.
Every widening of the defaults (``read_only``, ``writable``, ``network``) is recorded in
``run_started`` and in each attempt's detail (:meth:`Sandbox.describe`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .git_config_scrub import scrub_git_config
from .sandbox_init import INIT

PROBE_TIMEOUT_S = 10.0
ALLOWLIST_PORT = 3128
"""The network allowlist proxy's port on the sandbox's own loopback."""
TMP = Path("/tmp")
"""Private (an empty tmpfs) in every sandbox."""
SIGNAL_SHIELD = 'trap "" TERM INT HUP; exec "$0" "$@"'
"""``bwrap`` ignores the stop signals (the init inside forwards them to the command and
its children, who get their grace); SIGKILL of the group takes it, and the sandbox, down."""


@dataclass(frozen=True)
class SandboxSettings:
    """The ``[sandbox]`` table."""

    enabled: str | bool = "auto"
    read_only: tuple[str, ...] = ()
    """Extra paths visible read-only (``~`` is the user's HOME)."""
    writable: tuple[str, ...] = ()
    """Extra writable paths."""
    network: tuple[str, ...] = ()
    """``host:port`` (or ``*.domain:port``) a turn may reach through the allowlist proxy."""
    memory_mb: int | None = None
    max_processes: int | None = None
    toolchains: bool = True
    """Show the toolchains installed under HOME (:data:`TOOLCHAINS`) read-only."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> SandboxSettings:
        table = table or {}
        return cls(enabled=table.get("enabled", "auto"),
                   read_only=tuple(table.get("read_only", ())),
                   writable=tuple(table.get("writable", ())),
                   network=tuple(table.get("network", ())),
                   memory_mb=table.get("memory_mb"), max_processes=table.get("max_processes"),
                   toolchains=bool(table.get("toolchains", True)))

    def widenings(self) -> dict[str, list[str]]:
        """The keys that widen the default sandbox, with their values."""
        return {k: list(v) for k, v in (("read_only", self.read_only),
                                        ("writable", self.writable),
                                        ("network", self.network)) if v}


@dataclass(frozen=True)
class Layout:
    """Where a run's files are (what every sandbox hides, and where the checks' HOME is)."""

    repo_root: Path
    ledger_dir: Path
    pool_root: Path
    git_common_dir: Path
    home: Path | None
    """The user's real HOME (hidden)."""
    check_home: Path
    """The HOME of check commands in the sandbox (writable, kept between checks)."""


@dataclass(frozen=True)
class Mounts:
    """What one command sees beyond the read-only root."""

    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    """Mounted after ``writable`` (so ``worktree/.git`` stays read-only)."""
    proxy_port: int | None = None
    proxy_socket: Path | None = None
    capability_socket: Path | None = None

    @classmethod
    def for_worktree(cls, worktree: Path, *, writable: Sequence[Path] = (),
                     admin: Path | None = None, proxy_port: int | None = None,
                     proxy_socket: Path | None = None,
                     capability_socket: Path | None = None) -> Mounts:
        """The worktree writable, its ``.git`` link and git's entry for it read-only, plus
        ``writable``. ``admin`` defaults to what the ``.git`` link names."""
        admin = admin or _gitfile_admin(worktree)
        read_only = [worktree / ".git"] + ([admin] if admin is not None else [])
        return cls(writable=(worktree, *writable), read_only=tuple(read_only),
                   proxy_port=proxy_port, proxy_socket=proxy_socket,
                   capability_socket=capability_socket)


def _gitfile_admin(worktree: Path) -> Path | None:
    try:
        text = (worktree / ".git").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    path = Path(text[len("gitdir:"):].strip())
    return path if path.is_absolute() else worktree / path


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    python: str
    """The interpreter of the init (outside every hidden path)."""
    hidden: tuple[Path, ...]
    read_only: tuple[Path, ...]
    writable: tuple[Path, ...]
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    check_home: Path | None = None
    allowlist_socket: Path | None = None
    """The unix socket on the host of the run's allowlist proxy
    (:class:`taskmill.netproxy.NetProxy`), bridged to :data:`ALLOWLIST_PORT` inside."""
    files: tuple[tuple[Path, Path], ...] = ()
    """``(shown at, taken from)``: files shown read-only in place of others (the scrubbed
    copy of git's config, :mod:`taskmill.git_config_scrub`), in a private copy of their
    folder (:meth:`_rebuild`)."""
    limits_via: str = ""
    """How a cgroup holds ``memory_mb`` / ``max_processes`` (:mod:`taskmill.cgroups`:
    ``cgroup v1``, ``cgroup v2``, ``systemd-run scope``); '' for setrlimit in the init."""

    @staticmethod
    def allowlist_port(mounts: Mounts) -> int:
        """The allowlist proxy's loopback port inside the sandbox (each sandbox has a
        loopback of its own: only the model proxy's bridge can be in the way)."""
        return ALLOWLIST_PORT + (mounts.proxy_port == ALLOWLIST_PORT)

    def proxy_env(self, port: int) -> dict[str, str]:
        """The variables that send a command's traffic through the allowlist proxy."""
        if self.allowlist_socket is None:
            return {}
        url = f"http://127.0.0.1:{port}"
        return {"HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def rlimits(self) -> dict[str, int]:
        """The init's setrlimit limits: none when a cgroup holds them (RLIMIT_DATA breaks
        runtimes that reserve address space, RLIMIT_NPROC counts all of the user's
        processes: pids.max counts the command's)."""
        limits: dict[str, int] = {}
        if self.limits_via:
            return limits
        if self.settings.memory_mb is not None:
            limits["RLIMIT_DATA"] = self.settings.memory_mb * 1024 * 1024
        if self.settings.max_processes is not None:
            limits["RLIMIT_NPROC"] = self.settings.max_processes
        return limits

    def describe(self) -> dict[str, Any]:
        """What the sandbox allows, for ``run_started`` and each attempt's detail."""
        found: dict[str, Any] = {"enabled": True, "tool": "bubblewrap"}
        if self.settings.network:
            found["network"] = ("off except through taskmill's allowlist proxy: "
                                + ", ".join(self.settings.network))
        else:
            found["network"] = "off (the model proxy only, through its socket)"
        if self.files:
            found["replaced"] = {str(at): "a copy without credentials" for at, _ in self.files}
        widened = self.settings.widenings()
        if widened:
            found["widened"] = widened
        limits = {k: v for k, v in (("memory_mb", self.settings.memory_mb),
                                    ("max_processes", self.settings.max_processes))
                  if v is not None}
        if limits:
            found["limits"] = limits
            found["limits_via"] = self.limits_via or (
                "setrlimit: memory_mb as RLIMIT_DATA of each process, max_processes as "
                "RLIMIT_NPROC (per user; not for root)")
        return found

    def check_mounts(self, worktree: Path) -> Mounts:
        """A check command's view: its worktree and the checks' HOME writable."""
        home = () if self.check_home is None else (self.check_home,)
        if self.check_home is not None:
            self.check_home.mkdir(parents=True, exist_ok=True)
        return Mounts.for_worktree(worktree, writable=home)

    def _is_hidden(self, path: Path) -> bool:
        return any(_under(path, h) for h in self.hidden)

    def _tool_paths(self, argv0: str, env: Mapping[str, str]) -> list[Path]:
        """Read-only paths the command needs that the sandbox would hide (an agent CLI
        installed under the user's HOME, an agent script under ``/tmp``): its PATH
        directories there (never one holding a hidden path), the program itself (the npm
        package it belongs to), the init's Python installation and taskmill's own."""
        found: list[Path] = []
        for entry in env.get("PATH", "").split(os.pathsep):
            if not entry or not os.path.isabs(entry):
                continue
            path = _real(entry)
            if (self._is_hidden(path) or (_under(path, TMP) and path != TMP)) \
                    and not any(_under(h, path) for h in self.hidden):
                found.append(path)
            # a virtualenv's python links to an installation that may be hidden (pyenv)
            python = _real(Path(entry) / "python3")
            if python != Path(entry) / "python3" and python.is_file() \
                    and (self._is_hidden(python) or _under(python, TMP)):
                found.append(python.parent.parent)
        python = Path(self.python)
        if self._is_hidden(python) or _under(python, TMP):  # <prefix>/bin/python3.X
            found.append(python.parent.parent)
        own = _real(sys.prefix)  # taskmill's own installation (its CLI, inside the turn)
        if (self._is_hidden(own) or _under(own, TMP)) and not any(_under(h, own)
                                                                  for h in self.hidden):
            found.append(own)
        own_code = _real(Path(__file__).parent)  # an editable install: taskmill's source
        if self._is_hidden(own_code) or _under(own_code, TMP):
            found.append(own_code)
        if os.path.isabs(argv0):
            found += self._paths_of(argv0)
            # a script's interpreter (#!) may be hidden too (a pyenv python, say)
            interpreter = _shebang(Path(argv0))
            if interpreter is not None:
                found += self._paths_of(interpreter)
        return found

    def _paths_of(self, program: str) -> list[Path]:
        """:meth:`_program_paths` of ``program`` as named (a virtualenv's ``bin/python``:
        the virtualenv) and of the file it links to (the installation it belongs to)."""
        named = Path(os.path.abspath(program))
        found = self._program_paths(_real(named.parent) / named.name)
        real = _real(named)
        if real != named:
            found += self._program_paths(real)
        return found

    def _argument_files(self, argv: Sequence[str]) -> list[Path]:
        """Files the command line names by absolute path that the sandbox would hide (an
        interpreter's script: ``python /abs/agent.py``): each file alone, read-only."""
        found = []
        for arg in argv[1:]:
            if os.path.isabs(arg) and os.path.isfile(arg):
                path = _real(arg)
                if self._is_hidden(path) or _under(path, TMP):
                    found.append(path)
        return found

    def _shell_paths(self, argv: Sequence[str]) -> list[Path]:
        """For ``bash -c COMMAND`` (a check): what the command's program needs shown, when
        it is named by an absolute path (``/path/.venv/bin/python -m pytest``)."""
        if len(argv) < 3 or Path(argv[0]).name not in ("bash", "sh") or argv[1] != "-c":
            return []
        try:
            words = shlex.split(argv[2])
        except ValueError:
            return []
        for word in words:
            if "=" in word.split("/", 1)[0]:  # a leading VAR=value
                continue
            return self._paths_of(word) if os.path.isabs(word) else []
        return []

    def _program_paths(self, program: Path) -> list[Path]:
        """What a program the sandbox would hide needs shown read-only: its npm package, the
        installation a ``<prefix>/bin/<program>`` belongs to (an interpreter needs its
        libraries: a virtualenv's python links into a pyenv installation under HOME), or the
        file alone (its folder may be the user's checkout)."""
        if not (self._is_hidden(program) or _under(program, TMP)):
            return []
        parts = program.parts
        if "node_modules" in parts:
            # the whole install: an npm CLI needs its dependencies (Codex its platform
            # binary, a package of its own beside it)
            return [Path(*parts[: parts.index("node_modules") + 1])]
        prefix = program.parent.parent
        if program.parent.name == "bin" and not any(_under(h, prefix) for h in self.hidden):
            return [prefix]
        return [program]

    def _rebuild(self, ops: dict[tuple[Path, str], None],
                 entries: set[Path]) -> list[tuple[Path, Path]]:
        """Turn the folder of each of :attr:`files` into a private one (``rebuild``: a tmpfs
        of the sandbox's own) holding the copy and a bind of each of the folder's other
        entries, shown as the folder was (read-only, or writable under a ``writable`` path).
        Returns the ``(shown at, taken from)`` binds of the copies; the entries bound are
        added to ``entries`` (bound if they still exist when bwrap gets to them: git removes
        ``ORIG_HEAD``, ``FETCH_HEAD`` and the like as it goes).

        A file bound over the real one would not do: the host replaces ``.git/config`` by
        renaming a new file over it (``git config``, ``git remote add``), which detaches
        every mount on it, so the sandbox would see the new file, credentials included. Here
        no mount point is a host path git renames: the entries' mount points are in the
        tmpfs. A file entry (``packed-refs``, ``HEAD``) is seen as it was when the command
        started if the host replaces it meanwhile; a folder's contents (``objects``,
        ``refs``) stay live. Not shown: the replaced file's kin (``config.lock`` while git
        writes one, ``config.worktree``), other lock files, sockets and pipes (an fsmonitor
        daemon's)."""
        found: list[tuple[Path, Path]] = []
        for shown_at, source in self.files:
            folder = shown_at.parent
            if not (source.is_file() and folder.is_dir()):
                continue
            kind = _shown_as(folder, ops)
            if kind == "hide":
                continue  # not visible at all
            if (folder, "rebuild") not in ops:
                ops.pop((folder, "ro"), None)
                ops.pop((folder, "rw"), None)
                ops[(folder, "rebuild")] = None
                replaced = [at.name for at, _ in self.files if at.parent == folder]
                for entry in _entries(folder, replaced):
                    # hidden inside the folder (git's worktrees/), or shown as asked
                    if not any(_under(entry, h) and not _under(folder, h) for h in self.hidden) \
                            and not any((entry, k) in ops for k in ("rw", "ro")):
                        ops[(entry, kind)] = None
                        entries.add(entry)
            found.append((shown_at, source))
        return found

    def command(self, argv: Sequence[str], mounts: Mounts, *, cwd: Path,
                env: Mapping[str, str], prelude: str = "",
                started_fd: int | None = None) -> list[str]:
        """``argv`` (``argv[0]`` resolved already) as it is started in the sandbox;
        ``prelude``: shell code the outer ``/bin/sh -c`` runs first (joining the command's
        cgroup, :attr:`taskmill.cgroups.CommandGroup.prelude`); ``started_fd``: where the
        init reports that the command starts (:class:`taskmill.sandbox_start.StartReport`;
        the caller passes it on: ``pass_fds``)."""
        ops: dict[tuple[Path, str], None] = {}
        for path in self.hidden:
            ops[(path, "hide")] = None
        for path in (*self.writable, *mounts.writable):
            ops[(_real(path), "rw")] = None
        for path in (*self.read_only, *mounts.read_only, *self._tool_paths(argv[0], env),
                     *self._shell_paths(argv), *self._argument_files(argv)):
            ops[(_real(path), "ro")] = None
        for sock in (mounts.proxy_socket, mounts.capability_socket, self.allowlist_socket):
            if sock is not None:
                ops[(_real(sock), "ro")] = None
        entries: set[Path] = set()
        files = self._rebuild(ops, entries)
        rank = {"hide": 0, "rebuild": 1, "rw": 2, "ro": 3}
        args = [self.bwrap, "--die-with-parent", "--as-pid-1", "--cap-drop", "ALL",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        private = []
        for path, kind in sorted(ops, key=lambda op: (len(op[0].parts), rank[op[1]], op[0])):
            if kind in ("hide", "rebuild"):
                if path.is_dir() and path != Path("/"):
                    args += ["--tmpfs", str(path)]
                    private.append(path)
            elif path.exists():
                bind = "--bind" if kind == "rw" else "--ro-bind"
                args += [bind + "-try" if path in entries else bind, str(path), str(path)]
        for shown_at, source in files:  # into the private folders, before they turn read-only
            args += ["--ro-bind", str(source), str(shown_at)]
        for path in private:  # after the binds: not recursive, so those stay as they are
            args += ["--remount-ro", str(path)]
        args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(cwd)]
        port = self.allowlist_port(mounts)
        for name, value in self.proxy_env(port).items():
            args += ["--setenv", name, value]
        bridges: list[list[int | str]] = []
        if mounts.proxy_port is not None and mounts.proxy_socket is not None:
            bridges.append([mounts.proxy_port, str(mounts.proxy_socket)])
        if self.allowlist_socket is not None:
            bridges.append([port, str(self.allowlist_socket)])
        conf: dict[str, Any] = {"rlimits": self.rlimits(), "bridges": bridges}
        if started_fd is not None:
            conf["started_fd"] = started_fd
        return ["/bin/sh", "-c", prelude + SIGNAL_SHIELD, *args, "--",
                self.python, "-I", "-S", "-c", INIT, json.dumps(conf), *argv]


def _shown_as(path: Path, ops: Mapping[tuple[Path, str], None]) -> str:
    """How ``ops`` leave ``path``: the kind of the deepest of them at or above it (the last
    mounted; at one path the later kind), ``ro`` under the read-only root alone."""
    rank = {"hide": 0, "rw": 1, "ro": 2}
    covering = [(len(at.parts), rank[kind], kind) for at, kind in ops
                if kind in rank and _under(path, at)]
    return max(covering)[2] if covering else "ro"


def _entries(folder: Path, replaced: Sequence[str]) -> list[Path]:
    """The folders and regular files in ``folder`` (after symlinks), but ``replaced``, every
    name that starts with one of them, and git's lock files (``*.lock``: a new version
    being written, gone in a moment)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        path = folder / name
        if any(name.startswith(r) for r in replaced) or name.endswith(".lock"):
            continue
        if path.is_dir() or path.is_file():
            found.append(path)
    return found


# -- choosing it ---------------------------------------------------------------------------


def _shebang(path: Path) -> str | None:
    """The interpreter named by a script's ``#!`` line (None for a binary or no line)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    return words[0] if words and words[0].startswith("/") else None


def _init_python(hidden: Sequence[Path]) -> str:
    """An interpreter for the init, preferably one outside every hidden path (else its
    installation is shown read-only: :meth:`Sandbox._tool_paths`)."""
    base = str(getattr(sys, "_base_executable", sys.executable))
    candidates = [os.path.realpath(sys.executable), os.path.realpath(base),
                  *(os.path.realpath(p) for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                    if os.access(p, os.X_OK))]
    for candidate in candidates:
        if not any(_under(Path(candidate), h) for h in hidden):
            return candidate
    return candidates[0]


def hidden_paths(layout: Layout) -> list[Path]:
    paths = [layout.repo_root, layout.ledger_dir, layout.pool_root,
             layout.git_common_dir / "taskmill", layout.git_common_dir / "worktrees"]
    if layout.home is not None:
        paths.append(layout.home)
    for system in ("/run", "/var/run"):
        if os.path.isdir(system) and not os.path.islink(system):
            paths.append(Path(system))
    return [p for p in dict.fromkeys(_real(p) for p in paths) if p != Path("/")]


def _works(bwrap: str, python: str, env: Mapping[str, str]) -> str:
    """'' when ``bwrap`` runs a command as pid 1 of a sandbox here, else why not."""
    argv = [bwrap, "--die-with-parent", "--as-pid-1", "--cap-drop", "ALL", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-net", "--ro-bind", "/", "/",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            python, "-I", "-S", "-c", "import os, sys; sys.exit(0 if os.getpid() == 1 else 3)"]
    try:
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


_cache: dict[tuple[str, str], str] = {}
_cache_lock = threading.Lock()


def availability(env: Mapping[str, str], python: str) -> tuple[str | None, str]:
    """(the ``bwrap`` path, '') when sandboxes work here, else (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, "the sandbox needs Linux (bubblewrap)"
    bwrap = shutil.which("bwrap", path=env.get("PATH", os.defpath))
    if bwrap is None:
        return None, ("bubblewrap is not installed (`make bubblewrap`, or `apt-get install "
                      "bubblewrap`)")
    with _cache_lock:
        why = _cache.get((bwrap, python))
        if why is None:
            why = _works(bwrap, python, env)
            _cache[(bwrap, python)] = why
    if why:
        return None, f"bubblewrap does not work here: {why}"
    return bwrap, ""


TOOLCHAINS = (".pyenv", ".rbenv", ".nodenv", ".goenv", ".nvm", ".volta", ".asdf", ".bun",
              ".deno", ".rustup", ".cargo/bin", ".cargo/registry", ".local/bin", ".local/lib",
              ".local/share/uv", ".local/share/pipx", ".sdkman", "go/bin", "go/pkg/mod")
"""Toolchains people install under HOME, shown read-only inside the sandbox (the rest of the
real HOME stays hidden: ``~/.ssh``, ``~/.aws``, ``~/.config``, ``~/.gnupg``, ``~/.netrc``,
``~/.cargo/credentials.toml``, ...). ``[sandbox] toolchains = false`` hides them too."""


def toolchain_dirs(home: Path | None) -> tuple[Path, ...]:
    """The :data:`TOOLCHAINS` that exist under ``home``."""
    if home is None:
        return ()
    return tuple(home / name for name in TOOLCHAINS if (home / name).is_dir())


def choose(settings: SandboxSettings, layout: Layout,
           env: Mapping[str, str]) -> tuple[Sandbox | None, str]:
    """The sandbox of a run, or (None, why the run is unsandboxed: '' when turned off).

    Raises :class:`InvalidInput` when ``enabled = true`` and it cannot work here."""
    if settings.enabled is False:
        return None, "[sandbox] enabled = false"
    hidden = hidden_paths(layout)
    python = _init_python(hidden)
    bwrap, why = availability(env, python)
    if bwrap is None:
        if settings.enabled is True:
            raise InvalidInput(f"[sandbox] enabled = true, but {why}",
                               hint='install bubblewrap, or set [sandbox] enabled = "auto" '
                                    "(or false) in .taskmill/config.toml")
        return None, why
    home = str(layout.home) if layout.home is not None else "~"

    def expand(items: Sequence[str]) -> tuple[Path, ...]:
        return tuple(Path(home + p[1:]) if p == "~" or p.startswith("~/") else Path(p)
                     for p in items)

    toolchains = toolchain_dirs(layout.home) if settings.toolchains else ()
    return Sandbox(bwrap=bwrap, python=python, hidden=tuple(hidden),
                   read_only=(layout.git_common_dir, *toolchains,
                              *expand(settings.read_only)),
                   writable=expand(settings.writable),
                   settings=settings, check_home=layout.check_home,
                   files=_scrubbed_git_config(layout, env)), ""


def _scrubbed_git_config(layout: Layout, env: Mapping[str, str]) -> tuple[tuple[Path, Path], ...]:
    """Git's config as the sandbox shows it: a copy without credentials (remote URLs'
    user:password, ``http.extraheader``, ``credential.*``), written beside the checks' HOME;
    and the same for each submodule's repository under ``.git/modules`` (its remote URL can
    carry a token too).

    Raises :class:`InvalidInput` when git cannot read a config (the sandbox would show it
    as it is)."""
    common = layout.git_common_dir
    found: list[tuple[Path, Path]] = []
    out = layout.check_home.parent
    for config in [common / "config", *_submodule_configs(common / "modules")]:
        if not config.is_file():
            continue
        rel = config.relative_to(common)
        copy = out / "git-config" if rel == Path("config") else out / "git-config-of" / rel
        try:
            scrub_git_config(config, copy, env)
        except ValueError as exc:
            raise InvalidInput(str(exc), hint="fix the repository's git config "
                               f"(`git config --file {config} --list` shows the error)"
                               ) from exc
        found.append((_real(config), copy))
    return tuple(found)


_GIT_DIR_PARTS = frozenset({"objects", "refs", "logs", "hooks", "info", "lfs", "worktrees"})
"""A repository's folders that hold no submodule's repository (not walked)."""


def _submodule_configs(modules: Path) -> list[Path]:
    """The ``config`` of every repository under ``.git/modules`` (nested submodules' too:
    ``modules/a/modules/b``; a submodule's name may hold slashes: ``modules/vendor/lib``)."""
    found: list[Path] = []
    if not modules.is_dir():
        return found
    for folder, dirs, files in os.walk(modules):
        if "config" in files and "HEAD" in files:
            found.append(Path(folder) / "config")
            dirs[:] = [d for d in dirs if d not in _GIT_DIR_PARTS]
        dirs.sort()
    return found


def unsandboxed_warning(why: str) -> str:
    """The one line a run prints when its turns and checks are not sandboxed."""
    return (f"unsandboxed: agent turns and checks run without a sandbox ({why}); they can "
            "read and write whatever you can")
