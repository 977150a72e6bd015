"""Where a repository's ledger lives.

The ledger belongs to the repository, not to a checkout: inside a linked worktree (from
``git worktree add``) the ledger of the main checkout is used. Discovery reads git's own
files (``.git`` directory, or the ``gitdir:`` file of a linked worktree and its
``commondir``) instead of running git, so it costs no subprocess.

:class:`LedgerPaths` knows every file taskmill keeps for a repository; the run directory's
files (run state: locks, the pause flag, the event log, sockets) are named by
:class:`RunFiles`, reached as ``paths.run``. Nothing else spells these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import NotARepository, NotInitialized

LEDGER_DIR = ".taskmill"
CONFIG_FILE = "config.toml"
DB_FILE = "taskmill.db"
ENV_DIR = "TASKMILL_DIR"
"""Points at a ``.taskmill`` directory directly (set by the mill for its agents)."""
RUN_DIR = "run"
LOGS_DIR = "logs"
INCLUDE_FILE = "include"
"""Gitignored files copied into each worktree slot (one glob a line)."""

PAUSE_FILE = "paused"
EVENTS_FILE = "events.ndjson"
MERGE_LOCK = "merge.lock"
ADVANCE_JOURNAL = "advance.json"
CONFIG_STAMP = "config.checked"
TOKEN_FILE = "serve.token"


@dataclass(frozen=True)
class RunFiles:
    """The run directory (``.taskmill/run``): state shared by runs, the dashboard and the
    CLI. Gitignored; any of it may be missing."""

    dir: Path

    @property
    def paused(self) -> Path:
        """Exists while the mill is paused (no new task is dispatched)."""
        return self.dir / PAUSE_FILE

    @property
    def events(self) -> Path:
        """Every run's events, one JSON object a line (read by the dashboard)."""
        return self.dir / EVENTS_FILE

    @property
    def merge_lock(self) -> Path:
        """Serialises landings across the runs of a repository."""
        return self.dir / MERGE_LOCK

    @property
    def advance_journal(self) -> Path:
        """Exists while a landing moves the target (and the user's checkout)."""
        return self.dir / ADVANCE_JOURNAL

    @property
    def homes(self) -> Path:
        """Each agent's HOME inside the sandbox (``homes/<agent>``)."""
        return self.dir / "homes"

    @property
    def check_home(self) -> Path:
        """The checks' HOME inside the sandbox."""
        return self.homes / "checks"

    @property
    def progress_dir(self) -> Path:
        return self.dir / "progress"

    def progress(self, task_id: str) -> Path:
        """The notes an agent keeps for the next turn of its task, alone in a folder of the
        task's (the sandbox shows the folder writable, so an agent may write the notes to a
        new file and rename it over them)."""
        return self.progress_dir / task_id / "notes.md"

    def legacy_progress(self, task_id: str) -> Path:
        """Where the notes were kept before they had a folder (moved on first use)."""
        return self.progress_dir / f"{task_id}.md"

    def run_lock(self, run_id: str) -> Path:
        """Held by run ``run_id`` for its lifetime (free: the run is over, or died)."""
        return self.dir / f"run-{run_id}.lock"

    @property
    def config_stamp(self) -> Path:
        """The config file that last passed the check (see ``load_config``)."""
        return self.dir / CONFIG_STAMP

    @property
    def serve_token(self) -> Path:
        """The dashboard's token (0600)."""
        return self.dir / TOKEN_FILE

    @property
    def cap_dir(self) -> Path:
        """Turn sockets, one directory per run (``cap/<run id>``)."""
        return self.dir / "cap"

    def proxy_socket(self, run_id: str) -> Path:
        """Run ``run_id``'s model proxy."""
        return self.dir / f"proxy-{run_id}.sock"

    def net_socket(self, run_id: str) -> Path:
        """Run ``run_id``'s network allowlist proxy."""
        return self.dir / f"net-{run_id}.sock"

    def sockets(self, kind: str) -> list[tuple[str, Path]]:
        """(run id, path) of every ``kind`` socket (``proxy`` or ``net``) in the directory."""
        prefix, suffix = f"{kind}-", ".sock"
        return [(path.name[len(prefix):-len(suffix)], path)
                for path in sorted(self.dir.glob(f"{prefix}*{suffix}"))]


@dataclass(frozen=True)
class LedgerPaths:
    root: Path
    """The main checkout: the repository's top-level directory."""
    checkout: Path
    """The checkout the command runs in (the same as root unless in a linked worktree)."""

    @property
    def dir(self) -> Path:
        return self.root / LEDGER_DIR

    @property
    def config(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def db(self) -> Path:
        return self.dir / DB_FILE

    @property
    def logs(self) -> Path:
        return self.dir / LOGS_DIR

    @property
    def include(self) -> Path:
        return self.dir / INCLUDE_FILE

    @property
    def worktrees(self) -> Path:
        """The mill's pool of worktree slots: inside git's common directory, where git's
        walk up from a slot whose ``.git`` is broken finds no work tree (never the user's
        checkout)."""
        return git_common_dir(self.root) / "taskmill" / "worktrees"

    @property
    def legacy_worktrees(self) -> Path:
        """Where older versions kept the pool (inside the user's checkout)."""
        return self.dir / "worktrees"

    @property
    def run_dir(self) -> Path:
        return self.dir / RUN_DIR

    @property
    def run(self) -> RunFiles:
        """The run directory's files."""
        return RunFiles(self.run_dir)

    def initialized(self) -> bool:
        return self.config.is_file()


def _git_entry(start: Path) -> tuple[Path, Path] | None:
    """Find the checkout containing ``start`` and its ``.git`` entry."""
    current = start.resolve()
    for candidate in (current, *current.parents):
        entry = candidate / ".git"
        if entry.exists():
            return candidate, entry
    return None


def _common_root(checkout: Path, entry: Path) -> Path:
    if entry.is_dir():
        return checkout
    text = entry.read_text(encoding="utf-8").strip()
    if not text.startswith("gitdir:"):
        raise NotARepository(f"{entry} is not a git link file")
    gitdir = Path(text.split(":", 1)[1].strip())
    if not gitdir.is_absolute():
        gitdir = (checkout / gitdir).resolve()
    commondir_file = gitdir / "commondir"
    if commondir_file.is_file():
        common = Path(commondir_file.read_text(encoding="utf-8").strip())
        if not common.is_absolute():
            common = (gitdir / common).resolve()
    else:  # a submodule or a plain gitdir link: its own repository
        return checkout
    if common.name == ".git":
        return common.parent
    return checkout


def git_common_dir(checkout: Path) -> Path:
    """The repository's common git directory (objects, refs, ``worktrees/``) for a checkout,
    read from git's files: ``.git`` itself, or the ``gitdir:`` of a linked worktree or a
    submodule followed by its ``commondir``."""
    entry = checkout / ".git"
    if entry.is_dir():
        return entry.resolve()
    try:
        text = entry.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise NotARepository(f"{checkout} is not a git checkout (no .git)") from exc
    if not text.startswith("gitdir:"):
        raise NotARepository(f"{entry} is not a git link file")
    gitdir = Path(text.split(":", 1)[1].strip())
    gitdir = (gitdir if gitdir.is_absolute() else checkout / gitdir).resolve()
    commondir_file = gitdir / "commondir"
    if not commondir_file.is_file():
        return gitdir  # a submodule or a plain gitdir link: its own repository
    common = Path(commondir_file.read_text(encoding="utf-8").strip())
    return (common if common.is_absolute() else gitdir / common).resolve()


def find_repository(cwd: Path) -> LedgerPaths:
    """The repository containing ``cwd``; raises :class:`NotARepository` outside one."""
    found = _git_entry(cwd)
    if found is None:
        raise NotARepository(
            f"{cwd} is not inside a git repository",
            hint="run taskmill inside a git repository (git init, then taskmill init)",
        )
    checkout, entry = found
    return LedgerPaths(root=_common_root(checkout, entry), checkout=checkout)


def locate(cwd: Path, env: Mapping[str, str]) -> LedgerPaths:
    """The initialised ledger for ``cwd`` (or ``$TASKMILL_DIR``)."""
    override = env.get(ENV_DIR)
    if override:
        ledger_dir = Path(override).resolve()
        paths = LedgerPaths(root=ledger_dir.parent, checkout=cwd.resolve())
    else:
        paths = find_repository(cwd)
    if not paths.initialized():
        raise NotInitialized(
            f"no taskmill ledger in {paths.root}",
            hint=f"run `taskmill init` in {paths.root}",
        )
    return paths
