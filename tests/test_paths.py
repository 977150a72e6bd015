"""Where the ledger lives: ``taskmill init``, discovery from subdirectories and linked
worktrees, ``$TASKMILL_DIR`` and ``-C``, and the messages outside a repository or before
``init``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from taskmill.errors import NotARepository, NotInitialized
from taskmill.paths import find_repository, locate

Cli = Callable[..., CliResult]
Git = Callable[..., str]


def untracked(git: Git, repo: Path) -> set[str]:
    out = git(repo, "status", "--porcelain", "--untracked-files=all")
    return {line[3:] for line in out.splitlines()}


# -- init --------------------------------------------------------------------------------


def test_init_creates_config_ignore_rules_and_database(cli: Cli, git: Git, git_repo: Path) -> None:
    result = cli("init", "--json", cwd=git_repo).ok()
    info = result.json()
    ledger_dir = git_repo / ".taskmill"
    assert info == {"root": str(git_repo), "config": str(ledger_dir / "config.toml"),
                    "database": str(ledger_dir / "taskmill.db"), "prefix": "repo",
                    "synced_ledger": None}
    config = tomllib.loads((ledger_dir / "config.toml").read_text(encoding="utf-8"))
    assert config["prefix"] == "repo"
    assert (ledger_dir / "taskmill.db").is_file()
    # write something so that the WAL files exist too
    cli("create", "a task", cwd=git_repo).ok()
    (ledger_dir / "logs").mkdir(exist_ok=True)
    (ledger_dir / "logs" / "run.log").write_text("x", encoding="utf-8")
    assert untracked(git, git_repo) == {".taskmill/.gitignore", ".taskmill/config.toml"}
    git(git_repo, "check-ignore", "-q", ".taskmill/taskmill.db")
    git(git_repo, "add", ".taskmill")
    git(git_repo, "commit", "-q", "-m", "taskmill init")
    assert git(git_repo, "ls-files", ".taskmill").split() == [
        ".taskmill/.gitignore", ".taskmill/config.toml"]
    assert git(git_repo, "status", "--porcelain") == ""


def test_init_human_output_and_rerun_is_harmless(cli: Cli, git_repo: Path) -> None:
    first = cli("init", "--prefix", "proj", cwd=git_repo).ok()
    assert "taskmill ledger ready" in first.stdout and "prefix proj" in first.stdout
    tid = cli("create", "kept", "--json", cwd=git_repo).ok().json()["id"]
    assert tid.startswith("proj-")
    config = (git_repo / ".taskmill" / "config.toml").read_text(encoding="utf-8")
    again = cli("init", "--prefix", "other", "--json", cwd=git_repo).ok().json()
    assert again["prefix"] == "proj"  # an existing config is left alone
    assert (git_repo / ".taskmill" / "config.toml").read_text(encoding="utf-8") == config
    assert cli("show", tid, "--json", cwd=git_repo).ok().json()["title"] == "kept"


def test_init_default_prefix_comes_from_the_directory(cli: Cli, git: Git, tmp_path: Path) -> None:
    from conftest import make_git_repo

    repo = make_git_repo(tmp_path / "My Cool_Project.v2")
    assert cli("init", "--json", cwd=repo).ok().json()["prefix"] == "my-cool-project-v2"


@pytest.mark.parametrize("prefix", ["Bad", "1abc", "a b", "-x", ""])
def test_init_refuses_a_bad_prefix(cli: Cli, git_repo: Path, prefix: str) -> None:
    result = cli("init", "--prefix", prefix, "--json", cwd=git_repo)
    assert result.exit_code == 2
    assert result.error()["code"] == "invalid"
    assert not (git_repo / ".taskmill" / "config.toml").exists()


def test_init_from_a_subdirectory_puts_the_ledger_at_the_top(cli: Cli, git_repo: Path) -> None:
    sub = git_repo / "src" / "deep"
    sub.mkdir(parents=True)
    assert cli("init", "--json", cwd=sub).ok().json()["root"] == str(git_repo)
    assert (git_repo / ".taskmill" / "config.toml").is_file()
    assert not (sub / ".taskmill").exists()
    tid = cli("create", "from deep", "--json", cwd=sub).ok().json()["id"]
    assert [t["id"] for t in cli("list", "--json", cwd=git_repo).ok().json()] == [tid]


# -- outside a repository, before init ---------------------------------------------------


def test_outside_a_repository(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    for args in (["list"], ["init"], ["create", "x"], ["ready"]):
        human = cli(*args, cwd=plain)
        assert human.exit_code == 2, args
        assert "not inside a git repository" in human.stderr
        assert "git init" in human.stderr  # the hint says what to do
        assert human.stdout == ""
        as_json = cli(*args, "--json", cwd=plain)
        assert as_json.exit_code == 2
        error = as_json.error()
        assert error["code"] == "not_a_repository"
        assert "hint" in error
    with pytest.raises(NotARepository):
        find_repository(plain)


def test_before_init(cli: Cli, git_repo: Path) -> None:
    for args in (["list"], ["create", "x"], ["show", "tm-1"], ["verify"], ["dep", "cycles"]):
        human = cli(*args, cwd=git_repo)
        assert human.exit_code == 2, args
        assert "no taskmill ledger" in human.stderr
        assert "taskmill init" in human.stderr
        as_json = cli(*args, "--json", cwd=git_repo)
        assert as_json.exit_code == 2
        assert as_json.error()["code"] == "not_initialized"
    assert not (git_repo / ".taskmill").exists()  # nothing was created by the failures
    with pytest.raises(NotInitialized):
        locate(git_repo, {})


# -- linked worktrees --------------------------------------------------------------------


@pytest.fixture
def worktree(cli: Cli, git: Git, taskmill_repo: Path) -> Path:
    """A linked worktree (``git worktree add``) of a repository whose config is committed."""
    git(taskmill_repo, "add", ".taskmill")
    git(taskmill_repo, "commit", "-q", "-m", "taskmill init")
    path = taskmill_repo.parent / "linked"
    git(taskmill_repo, "worktree", "add", "-q", "-b", "feature", str(path))
    return path


def test_a_linked_worktree_uses_the_main_checkouts_ledger(cli: Cli, taskmill_repo: Path,
                                                          worktree: Path) -> None:
    # the committed config is checked out in the worktree, but no database is
    assert (worktree / ".taskmill" / "config.toml").is_file()
    main_task = cli("create", "made in main", "--json", cwd=taskmill_repo).ok().json()["id"]
    wt_task = cli("create", "made in the worktree", "--json", cwd=worktree).ok().json()["id"]
    sub = worktree / "sub" / "dir"
    sub.mkdir(parents=True)
    cli("close", main_task, cwd=sub).ok()
    in_main = {t["id"]: t["status"] for t in
               cli("list", "--all", "--json", cwd=taskmill_repo).ok().json()}
    assert in_main == {main_task: "closed", wt_task: "open"}
    in_wt = {t["id"]: t["status"] for t in cli("list", "--all", "--json", cwd=worktree).ok().json()}
    assert in_wt == in_main
    assert not (worktree / ".taskmill" / "taskmill.db").exists()
    paths = locate(sub, {})
    assert (paths.root, paths.checkout, paths.db) == (
        taskmill_repo, worktree, taskmill_repo / ".taskmill" / "taskmill.db")


def test_init_inside_a_linked_worktree_initialises_the_main_checkout(
        cli: Cli, git: Git, git_repo: Path) -> None:
    path = git_repo.parent / "early"
    git(git_repo, "worktree", "add", "-q", "-b", "early", str(path))
    info = cli("init", "--json", cwd=path).ok().json()
    assert info["root"] == str(git_repo)
    assert (git_repo / ".taskmill" / "taskmill.db").is_file()
    assert not (path / ".taskmill").exists()


def test_the_installed_command_in_a_linked_worktree(taskmill_repo: Path, worktree: Path) -> None:
    """The real ``taskmill`` process (not in-process) started inside the worktree."""
    script = Path(sys.executable).with_name("taskmill")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "taskmill"]
    made = subprocess.run([*argv, "create", "from a process", "--json"], cwd=worktree,
                          capture_output=True, text=True, check=False, env=os.environ.copy())
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([*argv, "list", "--json"], cwd=taskmill_repo, capture_output=True,
                            text=True, check=True, env=os.environ.copy())
    assert "from a process" in listed.stdout


def test_a_gitdir_link_without_commondir_is_its_own_repository(tmp_path: Path) -> None:
    """A submodule's checkout (``.git`` file, no ``commondir``) keeps its own ledger."""
    gitdir = tmp_path / "super" / ".git" / "modules" / "sub"
    gitdir.mkdir(parents=True)
    sub = tmp_path / "super" / "sub"
    sub.mkdir()
    (sub / ".git").write_text("gitdir: ../.git/modules/sub\n", encoding="utf-8")
    paths = find_repository(sub)
    assert paths.root == sub and paths.checkout == sub


def test_a_relative_worktree_link(tmp_path: Path, git_repo: Path) -> None:
    """``.git`` files and ``commondir`` holding relative paths resolve too."""
    wt = tmp_path / "handmade"
    wt.mkdir()
    admin = git_repo / ".git" / "worktrees" / "handmade"
    admin.mkdir(parents=True)
    (admin / "commondir").write_text("../..\n", encoding="utf-8")
    (wt / ".git").write_text(f"gitdir: {os.path.relpath(admin, wt)}\n", encoding="utf-8")
    assert find_repository(wt).root == git_repo


# -- $TASKMILL_DIR and -C ----------------------------------------------------------------


def test_taskmill_dir_points_at_a_ledger_from_anywhere(cli: Cli, taskmill_repo: Path,
                                                       tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"TASKMILL_DIR": str(taskmill_repo / ".taskmill")}
    tid = cli("create", "via env", "--json", cwd=elsewhere, env=env).ok().json()["id"]
    assert cli("show", tid, "--json", cwd=taskmill_repo).ok().json()["title"] == "via env"
    missing = cli("list", "--json", cwd=elsewhere, env={"TASKMILL_DIR": str(elsewhere)})
    assert missing.exit_code == 2 and missing.error()["code"] == "not_initialized"


def test_dash_c_runs_as_if_started_there(cli: Cli, taskmill_repo: Path, tmp_path: Path) -> None:
    tid = cli("-C", str(taskmill_repo), "create", "via -C", "--json", cwd=tmp_path).ok().json()["id"]
    assert cli("show", tid, "--json", cwd=taskmill_repo).ok().json()["id"] == tid
