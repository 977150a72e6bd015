"""A hostile agent, in one sandboxed turn, tries to get out: every attempt is denied, its
honest work still lands, and nothing else changes.

The agent records each attempt and what happened into a file of its own worktree (which
lands with its work); the test then checks the same from outside: secrets not in the report,
files outside the worktree unchanged, no connection reached the test's server, no process
of the turn left running. (Attempts through the ledger's CLI, MCP server and web API are
tested where those are guarded.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mill_helpers import PY, MillRepo, process_alive, wait_for
from taskmill.sandbox import availability

SECRET_ENV = "fake-secret-in-taskmills-env-7f3a"
SSH_KEY = "FAKE-SSH-PRIVATE-KEY-91c2"
CHECKOUT_SECRET = "untracked-secret-of-the-user-4d1e"
SLOT_SECRET = "another-slots-file-b7e0"
LATE_TOKEN = "hostile-daemon-5c9d"

bwrap, why_not = availability(os.environ, os.path.realpath(PY))
pytestmark = pytest.mark.skipif(bwrap is None, reason=f"no sandbox here: {why_not}")

HOSTILE = '''\
#!{py}
import json, os, pathlib, shutil, socket, sqlite3, subprocess, sys
sys.stdin.read()
WT = pathlib.Path(os.environ["TASKMILL_WORKTREE"])
P = json.loads({paths!r})
report = []

def attempt(what, action):
    try:
        got = action()
    except Exception as exc:
        report.append({{"what": what, "result": "denied: %s: %s" % (type(exc).__name__, exc)}})
        return
    report.append({{"what": what, "result": "ALLOWED: %r" % (got,)}})

def read(path):
    return pathlib.Path(path).read_text(errors="replace")

def environ_with_secret():
    found = []
    pids = [e for e in os.listdir("/proc") if e.isdigit()] + [str(os.getppid()), sys.argv[1]]
    for pid in pids:
        try:
            data = pathlib.Path("/proc/%s/environ" % pid).read_bytes()
        except OSError:
            continue
        if P["secret_env"].encode() in data:
            found.append(pid)
    if not found:
        raise PermissionError("no visible process environment holds the secret")
    return found

def write(path):
    pathlib.Path(path).write_text("pwned")
    # a write into a throw-away tmpfs is not a write outside: did it reach the host's file?
    return "written (check outside)"

def sqlite_write():
    conn = sqlite3.connect(P["db"])
    conn.execute("UPDATE tasks SET status = 'closed'")
    conn.commit()

def connect():
    with socket.create_connection(("127.0.0.1", P["port"]), timeout=2) as conn:
        conn.sendall(b"hello from the sandbox")
        return conn.recv(100)

def remove_git():
    gitfile = WT / ".git"
    try:
        gitfile.unlink()
    finally:
        if not gitfile.exists():
            raise AssertionError("unreachable")

def git(*args):
    proc = subprocess.run(["git", *args], cwd=WT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PermissionError(proc.stderr.strip().splitlines()[-1])
    return proc.stdout

attempt("read /proc/<pid>/environ of taskmill (and every visible process)", environ_with_secret)
attempt("read ~/.ssh/id_rsa of the user's HOME", lambda: read(P["ssh_key"]))
attempt("read the ledger database", lambda: read(P["db"]))
attempt("write the ledger database", sqlite_write)
attempt("list the worktree pool", lambda: os.listdir(P["pool"]))
attempt("read another slot's file", lambda: read(P["slot_file"]))
attempt("read the user's checkout", lambda: read(P["checkout_file"]))
attempt("write into the user's checkout", lambda: write(P["checkout_pwn"]))
attempt("write into the user's HOME", lambda: write(P["home_pwn"]))
attempt("write into the read-only root", lambda: write(P["root_pwn"]))
attempt("remove .git", remove_git)
attempt("move the target branch", lambda: git("update-ref", "refs/heads/main", "HEAD"))
attempt("commit by itself", lambda: git("commit", "--allow-empty", "-m", "sneaky"))
attempt("install a git hook", lambda: write(P["hook"]))
attempt("reach a 127.0.0.1 port of the host", connect)
# a daemon of its own: it would write into the worktree (and so into the task's commit)
# after the turn, were it still alive then
subprocess.Popen(["setsid", sys.executable, "-c",
                  "import pathlib, sys, time; time.sleep(3); "
                  "pathlib.Path(sys.argv[1]).write_text('late')", str(WT / "late.txt"),
                  P["late_token"]], start_new_session=True)
report.append({{"what": "leave a setsid child", "result": "started (check outside)"}})
(WT / "feature.txt").write_text("the honest work\\n")
(WT / "hostile-report.json").write_text(json.dumps(report, indent=1))
'''


class Listener:
    """A TCP server on the host's loopback that records every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def _late_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if LATE_TOKEN.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return [pid for pid in found if process_alive(pid)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_hostile_agent_is_denied_everything_and_its_honest_work_lands(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, sandbox={})  # the default sandbox: nothing widened
    home = tmp_path / "user-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SSH_KEY)
    (repo.root / "notes-secret.txt").write_text(CHECKOUT_SECRET)  # untracked
    other_slot = repo.pool / "w7"
    other_slot.mkdir(parents=True)
    (other_slot / "slot-file.txt").write_text(SLOT_SECRET)
    listener = Listener()
    # on the root filesystem (not under /tmp, private in the sandbox), removed at the end
    root_pwn = Path(__file__).resolve().parent / f"pwned-{os.getpid()}-{time.monotonic_ns()}"
    paths = {
        "secret_env": SECRET_ENV, "ssh_key": str(home / ".ssh" / "id_rsa"),
        "db": str(repo.root / ".taskmill" / "taskmill.db"), "pool": str(repo.pool),
        "slot_file": str(other_slot / "slot-file.txt"),
        "checkout_file": str(repo.root / "notes-secret.txt"),
        "checkout_pwn": str(repo.root / "pwned.txt"), "home_pwn": str(home / "pwned.txt"),
        "hook": str(repo.root / ".git" / "hooks" / "post-commit"),
        "port": listener.port, "late_token": LATE_TOKEN, "root_pwn": str(root_pwn),
    }
    agent = tmp_path / "hostile.py"
    agent.write_text(HOSTILE.format(py=PY, paths=json.dumps(paths)), encoding="utf-8")
    agent.chmod(0o755)
    repo.create("tm-h", "do the feature", checks=["test -f feature.txt"])
    before_home, before_slot = _snapshot(home), _snapshot(other_slot)
    db_rows = repo.ledger.store.conn.execute("SELECT id, status FROM tasks").fetchall()
    repo.ledger.close_db()

    events = tmp_path / "events.ndjson"
    # exec: the shell's pid is taskmill's, handed to the agent on its command line
    command = (f"exec {PY} -m taskmill run --allow-unchecked --json-events {events} "
               f"--agent-cmd '{agent} '$$")
    env = {**os.environ, "HOME": str(home), "SOME_API_KEY": SECRET_ENV}
    try:
        proc = subprocess.run(["sh", "-c", command], cwd=repo.root, env=env,
                              capture_output=True, text=True, timeout=120,
                              start_new_session=True)
        assert not root_pwn.exists()
    finally:
        root_pwn.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # the honest work landed, with the agent's report of what it tried
    repo.assert_all_landed_once(["tm-h"])
    assert repo.git("show", "main:feature.txt") == "the honest work\n"
    report = json.loads(repo.git("show", "main:hostile-report.json"))
    assert len(report) == 16, report
    text = json.dumps(report)
    for secret in (SECRET_ENV, SSH_KEY, CHECKOUT_SECRET, SLOT_SECRET, "SQLite format"):
        assert secret not in text, (secret, report)
    for entry in report:
        if entry["what"] == "list the worktree pool":  # its own slot only
            assert entry["result"] in ("ALLOWED: ['w0']", "ALLOWED: ['w1']"), entry
        elif entry["result"].startswith("ALLOWED"):
            # only writes may "succeed", into the sandbox's own throw-away tmpfs
            assert "write" in entry["what"] and "check outside" in entry["result"], entry
        else:
            assert entry["result"].startswith(("denied", "started")), entry
    # ... and from outside: nothing else changed
    assert not (repo.root / "pwned.txt").exists()
    assert not (repo.root / ".git" / "hooks" / "post-commit").exists()
    assert _snapshot(home) == before_home and _snapshot(other_slot) == before_slot
    assert (repo.root / "notes-secret.txt").read_text() == CHECKOUT_SECRET
    assert listener.connections == 0
    assert repo.git("log", "--format=%s", "main").count("sneaky") == 0
    rows = dict(repo.ledger.store.conn.execute("SELECT id, status FROM tasks").fetchall())
    assert rows == {tid: "closed" for tid, _ in db_rows}
    repo.verify_ok()
    # the setsid daemon died with the turn: it never wrote its late file
    assert wait_for(lambda: not _late_processes(), timeout=5)
    time.sleep(3.5)
    assert not list(repo.pool.rglob("late.txt"))
    assert "late.txt" not in repo.git("ls-tree", "-r", "--name-only", "main")
    # the attempt and run_started say the turn was sandboxed, with nothing widened
    started = [json.loads(line) for line in events.read_text().splitlines()
               if json.loads(line)["event"] == "run_started"]
    assert started[0]["sandbox"]["enabled"] is True and "widened" not in started[0]["sandbox"]
    attempt = repo.attempts("tm-h")[-1]
    assert attempt["detail"]["sandbox"]["enabled"] is True, attempt["detail"]


def test_a_sandboxed_agent_renames_its_notes_into_place_and_sees_no_git_credentials(
        tmp_path: Path) -> None:
    from mill_helpers import agent_script
    repo = MillRepo(tmp_path, sandbox={"writable": ["{spy}"]})
    subprocess.run(["git", "remote", "add", "origin", "https://bob:ghp_GITSECRET@example.com/r"],
                   cwd=repo.root, check=True)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "value.txt").write_text(str(ITER))
        notes = pathlib.Path(os.environ["TASKMILL_PROGRESS_FILE"])
        new = notes.with_name("notes.new")
        new.write_text(notes.read_text() + f"NOTE-{ITER}\\n")
        os.replace(new, notes)  # an atomic write, as editors and agents do
        config = subprocess.run(["git", "config", "--list"], capture_output=True, text=True)
        (WT / f"config-{ITER}.txt").write_text(config.stdout)
    """, spy=repo.spy)
    repo.create("tm-n", "value two", checks=["test \"$(cat value.txt)\" = 2"])
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    assert "NOTE-1" in (repo.spy / "prompt-tm-n-2.stdin").read_text()
    seen = subprocess.run(["git", "show", "main:config-2.txt"], cwd=repo.root,
                          capture_output=True, text=True, check=True).stdout
    assert "remote.origin.url=https://example.com/r" in seen and "GITSECRET" not in seen


def test_each_tasks_checks_have_a_home_of_their_own(tmp_path: Path) -> None:
    from mill_helpers import agent_script
    repo = MillRepo(tmp_path, sandbox={"writable": ["{spy}"]})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text("done")
    """, spy=repo.spy)
    # a's checks leave something in HOME; b (after a) must not see it
    repo.create("tm-a", "a", checks=["echo a > $HOME/poison && test -f tm-a.txt"])
    repo.create("tm-b", "b", after=["tm-a"],
                checks=["test ! -e $HOME/poison && test -f tm-b.txt"])
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-b"])
    homes = repo.root / ".taskmill" / "run" / "homes" / "checks" / "tasks"
    assert not (homes / "tm-a").exists() and not (homes / "tm-b").exists()  # landed: removed
