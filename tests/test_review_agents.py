"""The real Claude Code and Codex CLIs as reviewers, through their structured-output modes,
against the scripted model server: ``taskmill review HEAD`` on a commit that breaks
``add``. Claude Code gets ``--json-schema`` (it offers the model a ``StructuredOutput`` tool,
whose input becomes the result's ``structured_output``); Codex gets ``--output-schema``
(sent as the request's ``text.format`` JSON schema, strict). Skipped, with the install
command, when the CLI is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from agent_e2e_helpers import KEY_ENV, KEY_VALUE, agent_table, require_agent
from taskmill.testing.fake_model import FakeModelServer

pytestmark = pytest.mark.agents

PY = sys.executable
FINDING = {"file": "calc.py", "line_start": 2, "line_end": 2, "severity": "blocker",
           "confidence": 0.9, "title": "add subtracts", "explanation": "it returns a - b",
           "suggested_fix": "return a + b"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.parametrize("name", ["claude", "codex"])
def test_the_cli_reviews_through_its_structured_output_mode(name: str, tmp_path: Path) -> None:
    binary = require_agent(name)
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    subprocess.run([PY, "-m", "taskmill", "init", "--prefix", "e2e"], cwd=root, check=True,
                   capture_output=True)
    if name == "claude":  # the schema's tool, then the end of the turn
        replies: list[dict[str, Any]] = [
            {"tool": "StructuredOutput", "args": {"findings": [FINDING]}}, {"text": "Done."}]
    else:  # Codex constrains the final message itself
        replies = [{"text": json.dumps({"findings": [FINDING]})}]
    with FakeModelServer({"turn": [{"reply": replies}]},
                         log_path=tmp_path / "requests.ndjson") as server:
        table = agent_table(name, binary, server.url)
        if name == "claude":  # as root outside a sandbox it refuses bypassPermissions
            table["permission_mode"] = "default"
        config = {"prefix": "e2e", "agents": {"reviewer": table},
                  "review": {"block_at": {"severity": "major", "confidence": 0.5}}}
        (root / ".taskmill" / "config.toml").write_text(tomli_w.dumps(config))
        git(root, "add", "-A")
        git(root, "commit", "-qm", "initial")
        (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
        git(root, "commit", "-qam", "break add")
        proc = subprocess.run([PY, "-m", "taskmill", "review", "HEAD", "--json"], cwd=root,
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, KEY_ENV: KEY_VALUE})
        bodies = [e.get("body") for e in server.model_requests()]

    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["reviewer_failed"] is None and out["tries"] == 1, out
    [finding] = out["findings"]
    assert {k: finding[k] for k in FINDING} == FINDING
    assert finding["blocking"] and finding["fate"] == "open" and finding["subject"] == "HEAD"
    # the structured-output mode was on: the schema went to the model
    if name == "claude":
        assert any("StructuredOutput" in {t.get("name") for t in b.get("tools", [])}
                   for b in bodies if isinstance(b, dict))
    else:
        formats = [b.get("text", {}).get("format", {}) for b in bodies if isinstance(b, dict)]
        assert any(f.get("type") == "json_schema" and f["schema"]["required"] == ["findings"]
                   for f in formats), formats
    # recorded as the mill records them, and the user's checkout is untouched
    listed = json.loads(subprocess.run([PY, "-m", "taskmill", "review", "list", "--json"],
                                       cwd=root, capture_output=True, text=True).stdout)
    assert [f["id"] for f in listed] == [finding["id"]]
    assert git(root, "status", "--porcelain").strip() == ""
    assert "review-" not in git(root, "worktree", "list")
