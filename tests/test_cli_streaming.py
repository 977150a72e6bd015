"""``list`` and ``blocked`` stream their JSON a page at a time: the bytes are the same as
the whole list dumped at once (the output before streaming), tables too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import invoke_cli, make_git_repo
from taskmill.beads import import_beads
from taskmill.cli import render
from taskmill.project import open_project

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "beads-sample.jsonl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_git_repo(tmp_path / "repo")
    assert invoke_cli(["init", "--prefix", "bd"], cwd=repo).exit_code == 0
    project = open_project(repo, {})
    try:
        import_beads(project.ledger, SAMPLE)
        a = project.ledger.create("native <&> ünïcode task", labels=["x", "y"])
        b = project.ledger.create("waits on it", after=[a.id], metadata={"k": [1, {"z": None}]},
                                  description="two\nlines \u2028")
        project.ledger.create("child", parent=b.id)
        # written by orjson's rules these would differ: the encoder falls back for them
        project.ledger.create("floats", metadata={"f": 1e-07, "g": [1e16, 0.5]})
        project.ledger.create("ints", hints={"big": 2**70, "s": "\x7f\x1f"})
        project.ledger.update(a.id, {"status": "blocked"})
    finally:
        project.close()
    return repo


def _old_json(repo: Path, what: str, **filters: object) -> str:
    """What ``list --json`` / ``blocked --json`` printed before streaming."""
    project = open_project(repo, {})
    try:
        items = (project.ledger.list_tasks(**filters) if what == "list"  # type: ignore[arg-type]
                 else project.ledger.blocked())
        return json.dumps([i.to_json() for i in items], ensure_ascii=False, indent=2,
                          default=str) + "\n"
    finally:
        project.close()


@pytest.mark.parametrize("page", [1, 3, 1000])
@pytest.mark.parametrize(("args", "filters"), [
    (["list"], {}),
    (["list", "--status", "open"], {"status": ["open"]}),
    (["list", "--all"], {"include_hidden": True}),
    (["list", "--status", "nothing-has-this"], None),
])
def test_list_json_is_byte_identical(repo: Path, monkeypatch: pytest.MonkeyPatch, page: int,
                                     args: list[str], filters: dict[str, object] | None) -> None:
    monkeypatch.setattr("taskmill.cli.listing_ops.PAGE_SIZE", page)
    result = invoke_cli([*args, "--json"], cwd=repo)
    if filters is None:  # an unknown status: the error, before any output
        assert result.exit_code != 0 and result.stdout == ""
        return
    assert result.exit_code == 0, result.stderr
    expected = _old_json(repo, "list", **filters)
    assert len(json.loads(expected)) > (0 if "--status" in args else 3)
    assert result.stdout == expected


def test_empty_list_json(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "empty")
    assert invoke_cli(["init", "--prefix", "e"], cwd=repo).exit_code == 0
    assert invoke_cli(["list", "--json"], cwd=repo).stdout == "[]\n"
    assert invoke_cli(["blocked", "--json"], cwd=repo).stdout == "[]\n"


def test_blocked_json_is_byte_identical(repo: Path) -> None:
    result = invoke_cli(["blocked", "--json"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    expected = _old_json(repo, "blocked")
    assert len(json.loads(expected)) >= 2
    assert result.stdout == expected


def test_tables_are_unchanged(repo: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "140")
    monkeypatch.setattr("taskmill.cli.listing_ops.PAGE_SIZE", 2)
    listed = invoke_cli(["list"], cwd=repo, env={"COLUMNS": "140"}).stdout
    blocked = invoke_cli(["blocked"], cwd=repo, env={"COLUMNS": "140"}).stdout
    project = open_project(repo, {})
    try:
        capsys.readouterr()
        render.task_table(project.ledger.list_tasks())
        old_list = capsys.readouterr().out
        render.blocked_table(project.ledger.blocked())
        old_blocked = capsys.readouterr().out
    finally:
        project.close()
    assert listed == old_list and "bd-" in listed
    assert blocked == old_blocked and "waits on it" in blocked


def test_ready_json_is_byte_identical(repo: Path) -> None:
    """``ready --json`` is written item by item too (orjson where it writes the same bytes)."""
    result = invoke_cli(["ready", "--json"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    project = open_project(repo, {})
    try:
        items = [t.to_json() for t in project.ledger.ready()]
    finally:
        project.close()
    assert len(items) >= 3 and any(i["metadata"] for i in items)
    assert result.stdout == json.dumps(items, ensure_ascii=False, indent=2, default=str) + "\n"
