"""Setting up the real-project flow: the repository, its ledger, the plan, the agent, and the
user's own uncommitted work (see :mod:`taskmill.testing.real_project`)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..ledger import Ledger
from . import real_project_changes as changes
from .real_project_cache import PROJECT, Cache, sdist_top

PREFIX = "hz"
AGENT_NAME = "scripted"
AGENT_SCRIPT = Path(__file__).with_name("real_project_agent.py")
FAKE_SECRET = "fake-secret-7Qm2xV9"
USER_EDIT = f"\n<!-- my local note, not ready to commit ({FAKE_SECRET}-readme) -->\n"
PRIVATE_FILES = {
    # untracked, and not ignored by the project's .gitignore: `git add -A` would take it
    ".envrc": f"export HUMANIZE_API_TOKEN={FAKE_SECRET}-envrc\n",
    # untracked and ignored (the project's .gitignore lists .env)
    ".env": f"API_KEY={FAKE_SECRET}-env\n",
}
EDITED_FILE = "README.md"
GENERATED = ("src/humanize/_version.py", "src/humanize/locale")
"""Files the sdist ships but the project's .gitignore excludes (the version file hatch-vcs
writes, the compiled translations): committed with ``git add -f``, so that every worktree
has them, as a developer's checkout would after its dev install and translation build."""


class SetupError(RuntimeError):
    pass


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None,
        check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False, env=dict(env) if env is not None else None)
    if check and proc.returncode != 0:
        raise SetupError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


@dataclass
class RealProject:
    work: Path
    repo: Path
    env: Mapping[str, str]
    python: str
    cache: Cache
    tasks: list[dict[str, Any]]
    suite: str
    """The project's whole test suite, as a check command."""
    ids: dict[str, str] = field(default_factory=dict)
    """Plan key -> task id."""
    user_files: dict[str, bytes] = field(default_factory=dict)
    """The user's uncommitted and untracked files, as they must stay."""
    initial: str = ""
    """The commit ``main`` was at before the first run."""

    @property
    def state(self) -> Path:
        return self.work / "agent"

    @property
    def hold_ids(self) -> list[str]:
        return [self.ids[k] for k in changes.HOLD]

    def key_of(self, task_id: str) -> str:
        return next((k for k, v in self.ids.items() if v == task_id), task_id)

    def taskmill(self, *args: str) -> list[str]:
        return [self.python, "-m", "taskmill", *args]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.taskmill(*args), cwd=self.repo, env=dict(self.env),
                              capture_output=True, text=True, check=False, timeout=120)

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.repo, *args, env=self.env, check=check)

    # -- the agent's side ------------------------------------------------------------------

    def held(self) -> list[str]:
        return [t for t in self.hold_ids if (self.state / f"held-{t}").exists()]

    def release(self) -> None:
        (self.state / "release").write_text("go\n", encoding="utf-8")

    def agent_log(self) -> list[dict[str, Any]]:
        path = self.state / "agent.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    # -- the ledger ------------------------------------------------------------------------

    def ledger(self) -> Ledger:
        return Ledger.open(self.repo / ".taskmill" / "taskmill.db", prefix=PREFIX,
                           actor="real-project")

    def task(self, key: str) -> dict[str, Any]:
        ledger = self.ledger()
        try:
            data = ledger.show(self.ids[key]).to_json(full=True)
            data["attempts"] = ledger.attempts(self.ids[key])
            return data
        finally:
            ledger.close_db()

    def statuses(self) -> dict[str, str]:
        ledger = self.ledger()
        try:
            return {tid: ledger.show(tid).status for tid in self.ids.values()}
        finally:
            ledger.close_db()

    def comments(self, keys: Mapping[str, Any]) -> str:
        lines = []
        for key in keys:
            for comment in self.task(key).get("comments", []):
                lines.append(f"{key}: {str(comment.get('text', ''))[:300]}")
        return "\n".join(lines)

    @staticmethod
    def events(path: Path | None) -> list[dict[str, Any]]:
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def events_after(self, path: Path | None, when: float | None, kind: str,
                     slack: float = 0.0) -> list[str]:
        """Tasks of the ``kind`` events in ``path`` stamped more than ``slack`` seconds after
        ``when`` (epoch seconds)."""
        if when is None:
            return []
        return [str(e.get("task")) for e in self.events(path) if e.get("event") == kind
                and datetime.fromisoformat(e["ts"]).timestamp() > when + slack]


def pytest_command(cache: Cache) -> str:
    """The project's pytest (its whole suite; add paths for part of it), run by the project's
    own interpreter. ``PYTHONPATH=src``: the code tested is that of the worktree the command
    runs in (the venv holds no humanize)."""
    return f'PYTHONPATH=src "{cache.python}" -m pytest -q -p no:cacheprovider --benchmark-disable'


def set_up(cache: Cache, work: Path, *, env: Mapping[str, str], python: str,
           workers: int) -> RealProject:
    """Everything up to the first ``taskmill run``."""
    work.mkdir(parents=True, exist_ok=True)
    top = sdist_top(cache.sdist)
    with tarfile.open(cache.sdist) as tar:
        tar.extractall(work, filter="data")
    repo = work / PROJECT
    (work / top).rename(repo)
    suite = pytest_command(cache)
    tasks = changes.tasks(suite)
    project = RealProject(work=work, repo=repo, env=env, python=python, cache=cache, tasks=tasks,
                          suite=suite)
    project.state.mkdir()

    project.git("init", "-q", "-b", "main")
    project.git("config", "user.name", "Real Project")
    project.git("config", "user.email", "real-project@taskmill.invalid")
    project.git("config", "commit.gpgsign", "false")
    project.git("add", "-A")
    project.git("add", "-f", *GENERATED)
    project.git("commit", "-q", "-m", f"{PROJECT} {changes.HUMANIZE_VERSION}, from its sdist")

    done = project.cli("init", "--prefix", PREFIX)
    if done.returncode != 0:
        raise SetupError(f"taskmill init failed: {done.stderr}")
    agent_cmd = [python, str(AGENT_SCRIPT), str(project.state / "changes.json"),
                 str(project.state)]
    (repo / ".taskmill" / "config.toml").write_text("\n".join([
        "# taskmill settings for this repository (commit this file).",
        f'prefix = "{PREFIX}"',
        "",
        "[checks]",
        "# the project's whole test suite, with the project's own venv (test dependencies",
        "# only): PYTHONPATH=src tests the code of the worktree the check runs in",
        f"commands = [{json.dumps(suite)}]",
        "",
        "[run]",
        f'agent = "{AGENT_NAME}"',
        f"workers = {workers}",
        "max_iterations = 4",
        "",
        "# a scripted test double: it applies prepared, real code changes",
        f"[agents.{AGENT_NAME}]",
        'adapter = "exec"',
        f"command = {json.dumps(agent_cmd)}",
        "",
        "# every turn and check runs in taskmill's sandbox; the scripted agent reads its",
        "# prepared changes from, and coordinates with this flow through, the state folder",
        "[sandbox]",
        f"writable = [{json.dumps(str(project.state))}]",
        "",
    ]), encoding="utf-8")
    project.git("add", ".taskmill")
    project.git("commit", "-q", "-m", "taskmill init")
    project.initial = project.git("rev-parse", "HEAD").strip()

    plan = work / "plan.toml"
    plan.write_text(changes.plan_toml(tasks, [suite]), encoding="utf-8")
    done = project.cli("import", str(plan), "--json")
    if done.returncode != 0:
        raise SetupError(f"taskmill import failed: {done.stderr}")
    project.ids = {str(k): str(v) for k, v in json.loads(done.stdout).items()}
    agent_changes = {project.ids[t["key"]]: {"key": t["key"], "turns": t["turns"],
                                             "hold": t["key"] in changes.HOLD}
                     for t in tasks if "turns" in t}
    (project.state / "changes.json").write_text(json.dumps({"tasks": agent_changes}, indent=1),
                                                encoding="utf-8")

    # the user's own work, there for the whole flow
    edited = repo / EDITED_FILE
    edited.write_bytes(edited.read_bytes() + USER_EDIT.encode())
    for name, text in PRIVATE_FILES.items():
        (repo / name).write_text(text, encoding="utf-8")
    project.user_files = {name: (repo / name).read_bytes()
                          for name in (EDITED_FILE, *PRIVATE_FILES)}
    return project
