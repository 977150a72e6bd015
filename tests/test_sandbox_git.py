"""Git inside the sandbox (taskmill.sandbox): the repository's config is shown without its
credentials however the host changes it while a command runs, and git still works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill.sandbox import Mounts, SandboxSettings, choose
from test_sandbox import make_layout, needs_bwrap, run_in

SECRET = "ghp_RENAMED_SECRET"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def lock_config_with_a_secret(config: Path) -> Path:
    """What ``git config`` / ``git remote add`` do first: write the new config to
    ``config.lock`` (then they rename it over ``config``)."""
    lock = config.with_name("config.lock")
    lock.write_text(config.read_text()
                    + f'[remote "leak"]\n\turl = https://bob:{SECRET}@example.com/x.git\n')
    return lock


@needs_bwrap
def test_a_config_renamed_in_by_the_host_while_a_command_runs_stays_hidden(
        tmp_path: Path) -> None:
    layout, slot = make_layout(tmp_path)
    sandbox, why = choose(SandboxSettings(), layout, os.environ)
    assert sandbox is not None, why
    config = layout.git_common_dir / "config"
    lock = lock_config_with_a_secret(config)  # the host's git is writing the config
    script = f"""
import os, pathlib, subprocess, sys
config = pathlib.Path({str(config)!r})
def read(path):
    try:
        return pathlib.Path(path).read_text()
    except OSError as exc:
        return type(exc).__name__
print(repr(read(config.with_name("config.lock"))))
print("ready", flush=True)
sys.stdin.readline()  # the host has renamed the new config over the old one
print(read(config))
print(read("/proc/1/root" + str(config)))
print(read("/proc/self/root" + str(config)))
print(subprocess.run(["git", "config", "--list"], capture_output=True, text=True).stdout)
print(subprocess.run(["git", "status", "--short", "--branch"], capture_output=True,
                     text=True).stdout)
"""
    argv = sandbox.command([sys.executable, "-c", script], Mounts.for_worktree(slot), cwd=slot,
                           env=os.environ)
    with subprocess.Popen(argv, cwd=slot, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline()
        if proc.stdout.readline() == "ready\n":
            os.replace(lock, config)
        try:
            out, err = proc.communicate("go\n", timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert SECRET in config.read_text()  # the host's rename did happen
    assert SECRET not in out and "leak" not in out
    assert first == "'FileNotFoundError'\n"  # nor the lock while git writes it
    assert "## taskmill/t" in out  # git still works in the worktree


@needs_bwrap
def test_git_works_in_the_worktree_and_the_repository_stays_read_only(tmp_path: Path) -> None:
    layout, slot = make_layout(tmp_path)
    root = layout.repo_root
    (slot / "b.txt").write_text("b\n")
    git(slot, "add", "b.txt")
    git(slot, "commit", "-qm", "b on the task branch")
    git(root, "pack-refs", "--all")  # a packed ref and a loose one
    git(root, "branch", "other", "main")
    (slot / "c.txt").write_text("c\n")
    sandbox, why = choose(SandboxSettings(), layout, os.environ)
    assert sandbox is not None, why
    head_before = (layout.git_common_dir / "HEAD").read_text()
    proc = run_in(sandbox, slot, f"""
import pathlib, subprocess
git_dir = pathlib.Path({str(layout.git_common_dir)!r})
def write(path):
    try:
        with open(path, "a") as fh:
            fh.write("x")
        return "written"
    except OSError as exc:
        return type(exc).__name__
def git(*args):
    p = subprocess.run(["git", *args], capture_output=True, text=True)
    print(p.returncode, p.stdout.strip().replace("\\n", "|"))
git("status", "--short", "--branch")
git("log", "--format=%s")
git("diff", "--stat", "main...")
git("rev-parse", "--verify", "-q", "other")
git("branch", "--list")
git("worktree", "list", "--porcelain")
git("update-ref", "refs/heads/main", "HEAD")
git("symbolic-ref", "HEAD")
git("fetch", "-q", str(git_dir), "main")  # fetches write objects: read-only too
print(write(git_dir / "index"), write(git_dir / "HEAD"), write(git_dir / "new-file"),
      write(git_dir / "refs" / "heads" / "new"))
""")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "0 ## taskmill/t|?? c.txt"
    assert lines[1] == "0 b on the task branch|init"
    assert lines[2].startswith("0 b.txt | 1 +")
    assert lines[3] == "0 " + git(root, "rev-parse", "main").strip()
    assert lines[4] == "0 + main|  other|* taskmill/t"  # main: checked out elsewhere
    assert lines[5].startswith("0 worktree ")
    assert not lines[6].startswith("0 ")  # the repository's refs are read-only
    assert lines[7] == "0 refs/heads/taskmill/t"
    assert not lines[8].startswith("0 ")
    assert lines[9] == "OSError OSError OSError OSError"  # the user's checkout stays as it is
    assert (layout.git_common_dir / "HEAD").read_text() == head_before
    assert git(root, "rev-parse", "main") != git(root, "rev-parse", "taskmill/t")


@needs_bwrap
@pytest.mark.parametrize("widening", ["read_only", "writable"])
def test_a_widening_over_the_repository_shows_the_scrubbed_config_only(
        tmp_path: Path, widening: str) -> None:
    layout, slot = make_layout(tmp_path)
    git(layout.repo_root, "remote", "add", "origin", f"https://bob:{SECRET}@example.com/r.git")
    lock = lock_config_with_a_secret(layout.git_common_dir / "config")
    sandbox, why = choose(SandboxSettings(**{widening: (str(layout.repo_root),)}),  # type: ignore[arg-type]
                          layout, os.environ)
    assert sandbox is not None, why
    proc = run_in(sandbox, slot, f"""
import os, pathlib, subprocess
git_dir = pathlib.Path({str(layout.git_common_dir)!r})
print((git_dir / "config").read_text())
print(sorted(os.listdir(git_dir)))
print(sorted(os.listdir(git_dir.parent)))
print(subprocess.run(["git", "config", "--list"], capture_output=True, text=True).stdout)
""")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout
    assert "remote.origin.url=https://example.com/r.git" in proc.stdout
    assert lock.name not in proc.stdout
    assert "'a.txt'" in proc.stdout  # the widening does show the checkout
