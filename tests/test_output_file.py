"""``export -o FILE``: a file replaced whole or not at all, a symlink's file replaced, a
pipe or device written into, a failed write said plainly; and output that cannot be
written (a full disk) said in one line, not a traceback."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import invoke_cli, make_git_repo
from taskmill.cli.output_file import write_output
from taskmill.errors import InvalidInput


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_git_repo(tmp_path / "repo")
    invoke_cli(["init"], cwd=repo).ok()
    invoke_cli(["create", "one", "--id", "repo-1"], cwd=repo).ok()
    return repo


def test_export_replaces_the_file_whole_and_leaves_the_users_other_files(repo: Path) -> None:
    (repo / "out.jsonl.tmp").write_text("mine\n")  # a file of the user's, named as the old one
    real = repo / "real.jsonl"
    real.write_text("old\n")
    real.chmod(0o640)
    (repo / "link.jsonl").symlink_to("real.jsonl")
    invoke_cli(["export", "-o", "link.jsonl"], cwd=repo).ok()
    invoke_cli(["export", "-o", "out.jsonl"], cwd=repo).ok()
    assert (repo / "link.jsonl").is_symlink()
    assert '"id":"repo-1"' in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert (repo / "out.jsonl.tmp").read_text() == "mine\n"
    assert (repo / "out.jsonl").read_text() == real.read_text()
    assert not [p for p in os.listdir(repo) if p.endswith(".tmp") and p != "out.jsonl.tmp"]


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "kept.jsonl"
    target.write_text("as it was\n")

    def fails(fh: object) -> None:
        fh.write("half")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(InvalidInput, match=r"cannot write .*kept\.jsonl: No space left"):
        write_output(target, fails)
    assert target.read_text() == "as it was\n"
    assert os.listdir(tmp_path) == ["kept.jsonl"]
    with pytest.raises(InvalidInput, match="No such file or directory"):
        write_output(tmp_path / "no" / "such" / "x.jsonl", lambda fh: fh.write("x"))


def test_export_writes_into_a_pipe_or_device_as_it_is(repo: Path) -> None:
    read, write = os.pipe()
    try:
        done = invoke_cli(["export", "-o", f"/proc/self/fd/{write}"], cwd=repo)
        os.close(write)
        with os.fdopen(read) as fh:
            assert '"id":"repo-1"' in fh.read()
    finally:
        for fd in (read, write):
            with contextlib.suppress(OSError):
                os.close(fd)
    done.ok()
    if os.path.exists("/dev/full"):
        full = invoke_cli(["export", "-o", "/dev/full", "--json"], cwd=repo)
        assert full.exit_code == 2 and "No space left" in full.error()["message"]
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # (never replaced by a file)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["ready", "--json"],
                                  ["show", "repo-1"], ["export"], ["--version"]])
def test_output_that_cannot_be_written_is_said_in_one_line(repo: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "taskmill", *args], cwd=repo,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot write the output: No space left on device" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
