"""Helpers for the research-mode tests: a repository with a research target, in process
(:class:`ScriptedTurns` running :func:`research_step`) or as ``taskmill research``
subprocesses (the scripted research agent as an ``exec`` agent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taskmill.clock import FixedClock
from taskmill.project import Project, init, open_project
from taskmill.research.loop import Research
from taskmill.research.records import Experiment
from taskmill.research.session import open_research
from taskmill.testing.research_agent import research_step
from taskmill.testing.turns import ScriptedTurns

PY = sys.executable
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "research"
SRC = Path(__file__).resolve().parents[1] / "src"

KNOB_METRIC = """\
import os, pathlib, sys, time
total = sum(int(p.read_text()) for p in sorted(pathlib.Path("knobs").glob("*.txt")))
time.sleep(float(os.environ.get("KNOB_SLEEP", "0")))
print(f"knobs: {len(list(pathlib.Path('knobs').glob('*.txt')))}")
print(f"metric: {total}")
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


class ResearchRepo:
    """A git repository (branch main) with a ledger and a research target."""

    def __init__(self, tmp: Path, files: Mapping[str, str], research: Mapping[str, Any],
                 *, script: Mapping[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.root = tmp / "repo"
        self.root.mkdir(parents=True)
        self.env = dict(os.environ)
        git(self.root, "init", "-q", "-b", "main")
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        init(self.root, self.env, prefix="tm").close()
        self.script_path = tmp / "script.json"
        self.write_script(script or {"edits": {}})
        config = self.root / ".taskmill" / "config.toml"
        config.write_text(config.read_text(encoding="utf-8") + "\n[agents.scripted-research]\n"
                          'adapter = "exec"\n'
                          f"command = {json.dumps([PY, '-m', 'taskmill.testing.research_agent', str(self.script_path)])}\n"
                          'pass_env = ["PYTHONPATH"]\n', encoding="utf-8")
        self.write_research(research)
        (self.root / "program.md").write_text("Make the metric smaller.\n", encoding="utf-8")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "start")
        self.start = git(self.root, "rev-parse", "HEAD")

    def write_script(self, script: Mapping[str, Any]) -> None:
        self.script = dict(script)
        self.script_path.write_text(json.dumps(script), encoding="utf-8")

    def write_research(self, research: Mapping[str, Any]) -> None:
        lines = []
        for key, value in research.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        (self.root / "research.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- in process ------------------------------------------------------------------------

    def project(self) -> Project:
        return open_project(self.root, self.env, clock=FixedClock(step=0.001))

    def research(self, project: Project, *, workers: int | None = None) -> Research:
        return open_research(project, self.env, clock=project.ledger.clock,
                             turn_runner=ScriptedTurns(research_step(self.script)),
                             workers=workers)

    def run(self, *, workers: int | None = None) -> tuple[Research, list[Experiment]]:
        with self.project() as project:
            res = self.research(project, workers=workers)
            res.run()
            return res, res.log.all()

    # -- as processes ----------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        return [PY, "-m", "taskmill", *args]

    def cli(self, *args: str, input_text: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, input=input_text,
                              env=self.proc_env(), check=False)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """``taskmill ARGS`` in a session of its own (its output in ``spawned.log``)."""
        with (self.tmp / "spawned.log").open("a", encoding="utf-8") as out:
            return subprocess.Popen(self.command(*args), cwd=self.root, text=True,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env=self.proc_env(), start_new_session=True)

    def proc_env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep + path if path else ''}"}

    # -- git -------------------------------------------------------------------------------

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def branch_commits(self, branch: str) -> list[str]:
        """The research branch's commits after the start, oldest first."""
        out = self.git("rev-list", "--reverse", f"{self.start}..refs/heads/{branch}")
        return out.split() if out else []

    def measure_commit(self, commit: str, metric: Sequence[str]) -> float:
        """The metric at ``commit``, measured here in a scratch checkout."""
        where = self.tmp / f"m-{commit[:10]}"
        if where.exists():
            shutil.rmtree(where)
        self.git("worktree", "add", "-q", "--detach", str(where), commit)
        try:
            out = subprocess.run(list(metric), cwd=where, capture_output=True, text=True,
                                 check=True).stdout
        finally:
            self.git("worktree", "remove", "--force", str(where))
        return float(next(line.split(":")[1] for line in out.splitlines()
                          if line.startswith("metric:")))


def example_files() -> dict[str, str]:
    return {name: (EXAMPLE / name).read_text(encoding="utf-8")
            for name in ("sortlib.py", "bench.py")}


def example_edits() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLE / "edits.json").read_text(encoding="utf-8"))
    return data


def verdicts(experiments: Sequence[Experiment]) -> dict[int, str | None]:
    return {e.n: e.verdict for e in experiments}
