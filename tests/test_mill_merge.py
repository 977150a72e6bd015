"""The merge queue: conflicts and red project checks go back to the agent; the user's checkout
is moved forward only when that is safe and their uncommitted changes are never touched."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from mill_helpers import MillRepo, agent_script

SHARED = "line one\nline two\nline three\n"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_conflict_goes_back_to_the_agent_with_the_conflict_in_its_prompt(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={"shared.txt": SHARED})
    # both tasks rewrite line two; the loser sees conflict markers and resolves them by
    # keeping both lines
    cmd = agent_script(tmp_path / "agent.py", """
        shared = WT / "shared.txt"
        text = shared.read_text()
        mine = f"line two by {TASK}"
        if "<<<<<<<" in text:
            out, skip = [], False
            for line in text.splitlines():
                if line.startswith(("<<<<<<<", "=======", ">>>>>>>")):
                    continue
                out.append(line)
            shared.write_text("\\n".join(out) + "\\n")
            save(f"resolved-{TASK}", shared.read_text())
        elif mine not in text:
            time.sleep(0.3)  # both are cut from the same tip before either lands
            shared.write_text(text.replace("line two", mine))
    """, spy=repo.spy)
    check = "grep -q \"line two by $TASK_ID\" shared.txt && ! grep -q '^<<<<<<<' shared.txt"
    repo.create("tm-x", checks=[check.replace("$TASK_ID", "tm-x")])
    repo.create("tm-y", checks=[check.replace("$TASK_ID", "tm-y")])
    base = repo.tip()

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-x", "tm-y"])
    rejected = result.events_of("merge_rejected")
    assert len(rejected) == 1 and rejected[0]["reason"] == "conflict", rejected
    loser = rejected[0]["task"]
    winner = "tm-x" if loser == "tm-y" else "tm-y"
    # both were cut from the same tip
    for ws in result.events_of("workspace"):
        assert not ws["resumed"]
    assert [len(repo.attempts(t)) for t in (winner, loser)] == [1, 2]
    prompt = (repo.spy / f"prompt-{loser}-2.stdin").read_text()
    assert "conflicts with the target branch" in prompt
    assert "shared.txt" in prompt and "CONFLICT" in prompt
    # the final file holds both changes, and the loser landed on top of the winner
    final = repo.git("show", "main:shared.txt")
    assert f"line two by {winner}" in final and f"line two by {loser}" in final
    assert "<<<<<<<" not in final
    log = repo.git("log", "--format=%H", f"{base}..main").split()
    assert log == [repo.landings()[loser][0], repo.landings()[winner][0]]
    repo.verify_ok()


def test_red_project_check_on_the_merge_goes_back_to_the_agent(tmp_path: Path) -> None:
    # the task's own check passes with the forbidden word; the project check does not
    project_check = ("if grep -rq FORBIDDEN --include=*.txt .; then "
                     "echo 'PROJECT-CHECK: the word FORBIDDEN was found'; exit 1; fi")
    repo = MillRepo(tmp_path, checks=[project_check])
    cmd = agent_script(tmp_path / "agent.py", """
        word = "FORBIDDEN" if ITER == 1 else "allowed"
        (WT / "out.txt").write_text(word + "\\n")
    """, spy=repo.spy)
    repo.create("tm-r", checks=["test -s out.txt"])

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    (rejected,) = result.events_of("merge_rejected")
    assert rejected["reason"] == "merge_checks"
    prompt = (repo.spy / "prompt-tm-r-2.stdin").read_text()
    assert "project checks failed" in prompt
    assert "PROJECT-CHECK: the word FORBIDDEN was found" in prompt
    repo.assert_all_landed_once(["tm-r"])
    assert repo.git("show", "main:out.txt") == "allowed\n"
    # nothing with the forbidden word ever reached main
    assert "FORBIDDEN" not in repo.git("log", "-p", "main", "--", "out.txt")
    # the first attempt passed its own checks, then the merge queue rejected it
    assert [a["outcome"] for a in repo.attempts("tm-r")] == ["rejected_checks", "passed"]
    repo.verify_ok()


def test_project_checks_run_on_the_integrated_result(tmp_path: Path) -> None:
    """Two tasks that each pass alone but break the project together: the second to land
    is sent back, sees the failure, and fixes the integrated code."""
    project_check = ("n=$(ls parts | wc -l); if [ \"$n\" -gt 1 ] && ! [ -f parts/INDEX ]; then "
                     "echo \"PROJECT: $n parts but no parts/INDEX\"; exit 1; fi")
    repo = MillRepo(tmp_path, checks=[project_check], files={"parts/.keep": ""})
    cmd = agent_script(tmp_path / "agent.py", """
        parts = WT / "parts"
        if "no parts/INDEX" in PROMPT:
            (parts / "INDEX").write_text("\\n".join(sorted(p.name for p in parts.iterdir())))
        else:
            time.sleep(0.3)
            (parts / TASK).write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-p1", checks=["true"])
    repo.create("tm-p2", checks=["true"])

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    (rejected,) = result.events_of("merge_rejected")
    assert rejected["reason"] == "merge_checks"
    repo.assert_all_landed_once(["tm-p1", "tm-p2"])
    tree = repo.git("ls-tree", "--name-only", "main:parts").split()
    assert set(tree) == {".keep", "INDEX", "tm-p1", "tm-p2"}


def test_clean_checkout_of_another_branch_is_left_alone(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    repo.git("checkout", "-q", "-b", "feature")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "w.txt").write_text("work")
    """, spy=repo.spy)
    repo.create("tm-o")
    result = repo.run("--agent-cmd", cmd, "--target", "main")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-o"])
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/feature"
    assert not (repo.root / "w.txt").exists()
    assert repo.git("status", "--porcelain").strip() == ""


def test_dirty_checkout_with_non_overlapping_changes_is_moved_forward(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={"mine.txt": "mine\n", "work.txt": "old work\n",
                                     "staged.txt": "staged\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "work.txt").write_text("new work\\n")
        (WT / "added.txt").write_text("added\\n")
    """, spy=repo.spy)
    repo.create("tm-n")
    # the user's uncommitted work: a modified file, a staged change, an untracked file
    (repo.root / "mine.txt").write_text("mine, edited by the user\n")
    (repo.root / "staged.txt").write_text("staged by the user\n")
    repo.git("add", "staged.txt")
    (repo.root / "scratch.txt").write_text("user scratch\n")
    before = repo.tip()

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-n"])
    assert repo.tip() != before
    # the checkout moved forward: still on main, the landed files are there
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert (repo.root / "work.txt").read_text() == "new work\n"
    assert (repo.root / "added.txt").read_text() == "added\n"
    # and the user's changes are all still there, as they were
    assert (repo.root / "mine.txt").read_text() == "mine, edited by the user\n"
    assert (repo.root / "staged.txt").read_text() == "staged by the user\n"
    assert (repo.root / "scratch.txt").read_text() == "user scratch\n"
    status = sorted(repo.git("status", "--porcelain").splitlines())
    assert status == [" M mine.txt", "?? scratch.txt", "M  staged.txt"], status
    assert result.events_of("checkout_not_moved") == []


def test_dirty_checkout_with_overlapping_changes_is_kept_intact(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={"work.txt": "old work\n", "other.txt": "other\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "work.txt").write_text("new work from the agent\\n")
        (WT / "agent-only.txt").write_text("agent\\n")
    """, spy=repo.spy)
    repo.create("tm-o")
    (repo.root / "work.txt").write_text("the user's own unsaved edit\n")
    (repo.root / "other.txt").write_text("other, edited\n")
    (repo.root / "notes.txt").write_text("untracked notes\n")
    hashes = {name: _sha(repo.root / name) for name in ("work.txt", "other.txt", "notes.txt")}
    before = repo.tip()

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-o"])
    # the target ref advanced
    landed = repo.tip()
    assert landed != before and repo.git("show", "main:work.txt") == "new work from the agent\n"
    # the user's files are byte for byte what they were, and consistent with their HEAD
    assert {name: _sha(repo.root / name) for name in hashes} == hashes
    assert not (repo.root / "agent-only.txt").exists()
    assert repo.git("rev-parse", "HEAD").strip() == before
    status = sorted(repo.git("status", "--porcelain").splitlines())
    assert status == [" M other.txt", " M work.txt", "?? notes.txt"], status
    # taskmill says so, and how to catch up
    (note,) = result.events_of("checkout_not_moved")
    assert "uncommitted changes" in note["message"]
    assert "note" in result.stdout or "uncommitted" in result.stdout
    # the suggested recipe catches up without losing the user's edit (git shows the
    # overlap as a conflict between their edit and the landed work)
    repo.git("stash", "-q")
    repo.git("checkout", "-q", "main")
    repo.git("stash", "pop", "-q", check=False)
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    caught_up = (repo.root / "work.txt").read_text()
    assert "the user's own unsaved edit" in caught_up
    assert "new work from the agent" in caught_up
    assert (repo.root / "other.txt").read_text() == "other, edited\n"
    assert (repo.root / "agent-only.txt").read_text() == "agent\n"
    repo.verify_ok()


def test_dirty_checkout_survives_many_landings(tmp_path: Path) -> None:
    """Several tasks land one after another while the user has edits in both a file that
    overlaps one task and in untouched files: nothing of theirs is ever lost."""
    repo = MillRepo(tmp_path, files={"a.txt": "a\n", "b.txt": "b\n", "user.txt": "u\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        name = {"tm-1": "a.txt", "tm-2": "b.txt", "tm-3": "c.txt"}[TASK]
        (WT / name).write_text(f"{TASK} was here\\n")
    """, spy=repo.spy)
    for tid in ("tm-1", "tm-2", "tm-3"):
        repo.create(tid)
    (repo.root / "b.txt").write_text("user edit of b\n")
    (repo.root / "user.txt").write_text("user edit\n")
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1", "tm-2", "tm-3"])
    assert (repo.root / "b.txt").read_text() == "user edit of b\n"
    assert (repo.root / "user.txt").read_text() == "user edit\n"
    for name, tid in (("a.txt", "tm-1"), ("b.txt", "tm-2"), ("c.txt", "tm-3")):
        assert repo.git("show", f"main:{name}") == f"{tid} was here\n"


def test_touched_but_unchanged_file_does_not_count_as_a_change(tmp_path: Path) -> None:
    """A file the user's tools rewrote with the same content (new mtime, stale index stat)
    is not an uncommitted change: the checkout is still moved forward."""
    repo = MillRepo(tmp_path, files={"work.txt": "old work\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "work.txt").write_text("new work\\n")
    """, spy=repo.spy)
    repo.create("tm-t")
    work = repo.root / "work.txt"
    time.sleep(1.1)  # a different mtime second
    work.write_text("old work\n")
    os.utime(work, (time.time() + 5, time.time() + 5))

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert result.events_of("checkout_not_moved") == []
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert work.read_text() == "new work\n"
    assert repo.git("status", "--porcelain").strip() == ""
