"""What the real-project flow expects once both runs are over
(see :mod:`taskmill.testing.real_project`)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import real_project_changes as changes
from .real_project_setup import EDITED_FILE, FAKE_SECRET, PRIVATE_FILES, RealProject

TRAILER = "Taskmill-Task"


@dataclass
class Outcome:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))


def landings(project: RealProject) -> dict[str, list[str]]:
    """Task id -> the commits on main whose message has its trailer."""
    out = project.git("log", "--format=%H%x00%B%x01", "refs/heads/main")
    found: dict[str, list[str]] = {}
    for record in out.split("\x01"):
        if "\x00" not in record:
            continue
        sha, body = record.split("\x00", 1)
        for line in body.splitlines():
            if line.startswith(f"{TRAILER}: "):
                found.setdefault(line.split(": ", 1)[1].strip(), []).append(sha.strip())
    return found


def check_outcome(project: RealProject) -> Outcome:
    out = Outcome()
    tasks = {key: project.task(key) for key in project.ids}
    landed = landings(project)
    _children(out, project, tasks, landed)
    _epics(out, project, tasks, landed)
    _scenario(out, project, tasks)
    _history(out, project)
    _user_files(out, project)
    _final_suite(out, project)
    verify = project.cli("verify", "--json")
    try:
        verified = verify.returncode == 0 and json.loads(verify.stdout).get("ok") is True
    except ValueError:
        verified = False
    out.add("taskmill verify is ok", verified, (verify.stdout + verify.stderr)[-1500:])
    return out


def _children(out: Outcome, project: RealProject, tasks: dict[str, dict[str, Any]],
              landed: dict[str, list[str]]) -> None:
    wrong = []
    for key in changes.children(project.tasks):
        task, tid = tasks[key], project.ids[key]
        commits = landed.get(tid, [])
        reason = task.get("close_reason") or ""
        if task["status"] != "closed" or len(commits) != 1 or reason != f"landed {commits[0]}":
            comments = "; ".join(str(c.get("text", ""))[:200] for c in task.get("comments", []))
            wrong.append(f"{key} ({tid}): status {task['status']}, {len(commits)} landing "
                         f"commit(s) on main, close_reason {reason!r}"
                         + (f"; comments: {comments}" if comments else ""))
    out.add("every child task landed exactly once (one trailer commit on main, closed "
            "'landed <that commit>')", not wrong, "\n".join(wrong))


def _epics(out: Outcome, project: RealProject, tasks: dict[str, dict[str, Any]],
           landed: dict[str, list[str]]) -> None:
    epic_ids = {project.ids[k]: k for k in changes.epics(project.tasks)}
    handed = sorted({epic_ids[e["task"]] for e in project.agent_log()
                     if e.get("event") == "unplanned" and e.get("task") in epic_ids})
    attempted = sorted(k for k in epic_ids.values() if tasks[k].get("attempts"))
    with_commit = sorted(epic_ids[t] for t in landed if t in epic_ids)
    out.add("the epics were never handed to the agent (no turn, no attempt, no commit)",
            not handed and not attempted and not with_commit,
            f"handed to the agent: {handed}; with attempts: {attempted}; "
            f"with a landing commit: {with_commit}")
    wrong = []
    for key in epic_ids.values():
        epic = tasks[key]
        kids = [tasks[t["key"]] for t in project.tasks if t.get("parent") == key]
        last = max((str(k.get("closed_at") or "") for k in kids), default="")
        if epic["status"] != "closed":
            wrong.append(f"{key}: {epic['status']}")
        elif any(k["status"] != "closed" for k in kids) or str(epic["closed_at"]) < last:
            wrong.append(f"{key}: closed at {epic['closed_at']}, before its last child "
                         f"({last or 'still open'})")
    out.add("every epic is closed, once all its children are", not wrong, "\n".join(wrong))


def _counted(attempts: list[dict[str, Any]]) -> list[str]:
    return [str(a.get("outcome")) for a in attempts
            if a.get("outcome") not in (None, "interrupted", "rate_limited")]


def _scenario(out: Outcome, project: RealProject, tasks: dict[str, dict[str, Any]]) -> None:
    """The conflict and the retry really happened (not only: everything landed)."""
    pair = {project.ids[k]: k for k in changes.CONFLICT_PAIR}
    rejected = [e for run in ("run1", "run2")
                for e in project.events(project.work / f"events-{run}.ndjson")
                if e.get("event") == "merge_rejected" and e.get("task") in pair]
    resolved = [e for e in project.agent_log()
                if e.get("event") == "resolved" and e.get("task") in pair and e.get("files")]
    out.add("the conflicting pair met in the merge queue and the agent resolved it",
            any(e.get("reason") == "conflict" for e in rejected) and bool(resolved),
            f"merge rejections: {[(pair[e['task']], e.get('reason')) for e in rejected]}; "
            f"resolving turns: {[(pair[e['task']], e.get('files')) for e in resolved]}")
    counted = _counted(tasks[changes.RETRY].get("attempts", []))
    out.add(f"the retry: {changes.RETRY}'s first turn failed its check, a later one passed",
            len(counted) >= 2 and counted[0] == "failed" and counted[-1] == "passed",
            f"attempt outcomes: {counted}")


def _history(out: Outcome, project: RealProject) -> None:
    revs = project.git("rev-list", "--parents", f"{project.initial}..refs/heads/main").split("\n")
    empty = []
    for line in filter(None, revs):
        sha, *parents = line.split()
        tree = project.git("rev-parse", f"{sha}^{{tree}}").strip()
        if any(project.git("rev-parse", f"{p}^{{tree}}").strip() == tree for p in parents[:1]):
            empty.append(project.git("log", "-1", "--format=%h %s", sha).strip())
    out.add("no empty commit on main", not empty, "\n".join(empty))


def _user_files(out: Outcome, project: RealProject) -> None:
    changed = [name for name, data in project.user_files.items()
               if not (project.repo / name).is_file()
               or (project.repo / name).read_bytes() != data]
    out.add("the user's uncommitted edit and private files are byte-for-byte intact",
            not changed, f"changed or gone: {changed}")
    in_commits = project.git("log", "--all", "--format=%h %s", "-S", FAKE_SECRET).strip()
    by_path = project.git("log", "--all", "--format=%h %s", "--", *PRIVATE_FILES).strip()
    out.add("the user's edit and private files appear in no commit",
            not in_commits and not by_path,
            f"commits holding the secret:\n{in_commits}\ncommits touching "
            f"{', '.join(PRIVATE_FILES)}:\n{by_path}")
    head = project.git("symbolic-ref", "-q", "HEAD", check=False).strip()
    status = sorted(project.git("status", "--porcelain", "--untracked-files=all").splitlines())
    expected = sorted([f" M {EDITED_FILE}", "?? .envrc"])
    at_tip = project.git("rev-parse", "HEAD").strip() == project.git(
        "rev-parse", "refs/heads/main").strip()
    out.add("the user's checkout is on main at its tip, with only the user's own changes",
            head == "refs/heads/main" and at_tip and status == expected,
            f"HEAD {head or 'detached'} (at main's tip: {at_tip}); git status:\n"
            + "\n".join(status))


def _final_suite(out: Outcome, project: RealProject) -> None:
    """The project's whole suite on a fresh export of the final main."""
    archive = subprocess.run(["git", "-C", str(project.repo), "archive", "--format=tar",
                              "refs/heads/main"], capture_output=True, check=False,
                             env=dict(project.env))
    added = [e["path"] for t in project.tasks for turn in t.get("turns", [])
             for e in turn if e["path"].startswith("tests/")]
    with tempfile.TemporaryDirectory(prefix="real-project-main-", dir=project.work) as tmp:
        root = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(root, filter="data")
        missing = sorted({p for p in added if not (root / p).is_file()})
        command = project.suite
        proc = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True,
                              text=True, check=False, env=dict(project.env), timeout=600)
    out.add("the project's test suite passes on the final main, with every new test file",
            proc.returncode == 0 and not missing,
            f"missing test files: {missing}\n$ {command} -> exit {proc.returncode}\n"
            + "\n".join(proc.stdout.splitlines()[-15:]))

