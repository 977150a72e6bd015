"""The sandbox of turns and checks (taskmill.sandbox): what a command sees, the loopback
bridge to the model proxy, limits, the runner's contract inside it, and the config."""

from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import make_git_repo
from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.runner import run_turn
from taskmill.config_schema import check_config
from taskmill.containment import Containment
from taskmill.errors import InvalidInput
from taskmill.mill.checks import run_checks
from taskmill.netproxy import Allowlist, NetProxy
from taskmill.sandbox import Layout, Mounts, Sandbox, SandboxSettings, availability, choose

bwrap, why_not = availability(os.environ, os.path.realpath(sys.executable))
needs_bwrap = pytest.mark.skipif(bwrap is None, reason=f"no sandbox here: {why_not}")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_layout(tmp_path: Path) -> tuple[Layout, Path]:
    """A repository with one mill slot (returned), a ledger, and a user HOME."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("a\n")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "init")
    pool = root / ".git" / "taskmill" / "worktrees"
    pool.mkdir(parents=True)
    _git(root, "worktree", "add", "-q", str(pool / "w0"), "-b", "taskmill/t")
    (root / ".taskmill").mkdir()
    (root / ".taskmill" / "taskmill.db").write_text("ledger")
    home = tmp_path / "home"
    home.mkdir()
    layout = Layout(repo_root=root, ledger_dir=root / ".taskmill", pool_root=pool,
                    git_common_dir=root / ".git", home=home,
                    check_home=root / ".taskmill" / "run" / "homes" / "checks")
    return layout, pool / "w0"


def sandbox_of(tmp_path: Path, **settings: object) -> tuple[Sandbox, Path]:
    layout, slot = make_layout(tmp_path)
    sandbox, why = choose(SandboxSettings(**settings), layout, os.environ)  # type: ignore[arg-type]
    assert sandbox is not None, why
    return sandbox, slot


def run_in(sandbox: Sandbox, slot: Path, script: str, mounts: Mounts | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = sandbox.command([sys.executable, "-c", script], mounts or Mounts.for_worktree(slot),
                           cwd=slot, env=os.environ)
    return subprocess.run(argv, cwd=slot, capture_output=True, text=True, timeout=timeout,
                          check=False)


# -- the bridge to the model proxy ----------------------------------------------------------


class _Streaming(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(3):
            event = f"data: {i} {body.decode()}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.05)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = super().get_request()
        return conn, ("127.0.0.1", 0)  # http.server wants a (host, port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_bwrap
@pytest.mark.parametrize("deep", [False, True])
def test_the_proxy_is_reached_on_loopback_through_its_socket_and_streams(tmp_path: Path,
                                                                          deep: bool) -> None:
    """``deep``: the socket's path is longer than a unix socket address holds (a deep
    checkout, or pytest-xdist's tmp folders): the bridge reaches it all the same."""
    from taskmill.capability.protocol import bind_unix

    sandbox, slot = sandbox_of(tmp_path)
    folder = tmp_path / ("d" * 60) / ("e" * 40) if deep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "proxy.sock"
    assert (len(str(path)) > 108) is deep
    server = _UnixHTTPServer(str(path), _Streaming, bind_and_activate=False)
    bind_unix(server.socket, path)
    server.server_activate()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = _free_port()
    script = f"""
import http.client, json, time
conn = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
conn.request("POST", "/v1/messages", body=b"hi")
resp = conn.getresponse()
chunks = []
while True:
    line = resp.fp.readline()
    if not line:
        break
    chunks.append((round(time.monotonic(), 3), line.decode()))
    if line.startswith(b"0\\r"):
        break
print(resp.status, json.dumps([c for c in chunks if "data" in c[1]]))
"""
    try:
        mounts = Mounts.for_worktree(slot, proxy_port=port, proxy_socket=path)
        proc = run_in(sandbox, slot, script, mounts)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    status, rest = proc.stdout.split(" ", 1)
    assert status == "200"
    events = json.loads(rest)
    assert [e[1].strip() for e in events] == ["data: 0 hi", "data: 1 hi", "data: 2 hi"]
    # streamed: the events arrived as they were sent, not all at the end
    assert events[-1][0] - events[0][0] >= 0.08, events


@needs_bwrap
def test_no_network_but_its_own_loopback(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        proc = run_in(sandbox, slot, f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("reached")
except OSError as exc:
    print("refused", exc.errno)
""")
    assert proc.stdout.startswith("refused"), proc.stdout + proc.stderr


@needs_bwrap
def test_network_allowlist_is_enforced_host_by_host(tmp_path: Path) -> None:
    """Inside the sandbox (still its own network namespace) a CONNECT through HTTPS_PROXY
    reaches an allowlisted host:port, any other gets 403 (recorded), a plain-HTTP request
    is refused, and the allowlisted port itself cannot be reached directly."""
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(8)
    allowed = echo.getsockname()[1]
    other = _free_port()

    def serve_echo() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(b"echo:" + data)

    threading.Thread(target=serve_echo, daemon=True).start()
    refused: list[tuple[str, str]] = []
    netproxy = NetProxy(tmp_path / "net.sock", [f"127.0.0.1:{allowed}", "*.example.org:443"],
                        on_refused=lambda target, why: refused.append((target, why)))
    netproxy.start()
    assert (tmp_path / "net.sock").stat().st_mode & 0o777 == 0o600
    sandbox, slot = sandbox_of(tmp_path, network=(f"127.0.0.1:{allowed}", "*.example.org:443"))
    sandbox = replace(sandbox, allowlist_socket=netproxy.socket_path)
    script = f"""
import json, os, socket, urllib.parse, urllib.request
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
assert os.environ["HTTP_PROXY"] == os.environ["https_proxy"] == os.environ["HTTPS_PROXY"]
def connect(target):
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=5)
    s.sendall(("CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" % (target, target)).encode())
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        head += s.recv(1)
    return s, head.split(b" ")[1].decode()
found = {{"no_proxy": os.environ["NO_PROXY"]}}
s, found["allowed"] = connect("127.0.0.1:{allowed}")
s.sendall(b"ping")
found["echo"] = s.recv(100).decode()
found["other"] = connect("127.0.0.1:{other}")[1]
found["suffix_other_port"] = connect("www.example.org:80")[1]
try:
    urllib.request.urlopen("http://files.example.org/simple/", timeout=5)
except urllib.error.HTTPError as exc:
    found["plain_http"] = exc.code
try:
    socket.create_connection(("127.0.0.1", {allowed}), timeout=2)
    found["direct"] = "reached"
except OSError as exc:
    found["direct"] = "refused"
print(json.dumps(found))
"""
    try:
        proc = run_in(sandbox, slot, script)
    finally:
        netproxy.stop()
        echo.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {
        "no_proxy": "127.0.0.1,localhost", "allowed": "200", "echo": "echo:ping",
        "other": "403", "suffix_other_port": "403", "plain_http": 403, "direct": "refused"}
    assert [t for t, _ in refused] == [f"127.0.0.1:{other}", "www.example.org:80",
                                       "http://files.example.org/simple/"]
    assert "--unshare-net" in sandbox.command(["true"], Mounts.for_worktree(slot), cwd=slot,
                                              env=os.environ)
    described = sandbox.describe()
    assert described["widened"] == {"network": [f"127.0.0.1:{allowed}", "*.example.org:443"]}
    assert described["network"].startswith("off except through taskmill's allowlist proxy: ")


def test_allowlist_entries_match_exact_hosts_and_subdomains() -> None:
    allow = Allowlist(["PyPI.org:443", "*.example.org:443", "[::1]:8080"])
    assert allow.allows("pypi.org:443") == ("pypi.org", 443)
    assert allow.allows("pypi.org:80") is None
    assert allow.allows("evilpypi.org:443") is None
    assert allow.allows("files.example.org:443") == ("files.example.org", 443)
    assert allow.allows("example.org:443") is None
    assert allow.allows("badexample.org:443") is None
    assert allow.allows("[::1]:8080") == ("::1", 8080)
    assert allow.allows("garbage") is None


# -- what a command sees --------------------------------------------------------------------


@needs_bwrap
def test_a_command_sees_its_worktree_only(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path, read_only=("~/tools",), writable=(str(tmp_path / "out"),))
    layout_home = tmp_path / "home"
    (layout_home / "tools").mkdir()
    (layout_home / "tools" / "t.txt").write_text("tool")
    (layout_home / "secret.txt").write_text("secret")
    (tmp_path / "out").mkdir()
    proc = run_in(sandbox, slot, f"""
import os, pathlib
root = pathlib.Path({str(tmp_path / "repo")!r})
home = pathlib.Path({str(layout_home)!r})
def probe(f):
    try:
        return f()
    except OSError as exc:
        return type(exc).__name__
print(sorted(os.listdir(root)))
print(probe(lambda: (root / "a.txt").read_text()))
print(probe(lambda: (home / "secret.txt").read_text()))
print(probe(lambda: (home / "tools" / "t.txt").read_text()))
print(probe(lambda: (home / "tools" / "new").write_text("x")))
print(probe(lambda: pathlib.Path("new.txt").write_text("x")))
print(probe(lambda: pathlib.Path({str(tmp_path / "out" / "o.txt")!r}).write_text("x")))
print(sorted(p for p in os.listdir("/proc") if p.isdigit()))
print(os.getpid())
""")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # the checkout's own files are not there (only the mount points of .git and the ledger)
    assert lines[0] == "['.git', '.taskmill']"
    assert lines[1:4] == ["FileNotFoundError", "FileNotFoundError", "tool"]
    assert lines[4] == "OSError"  # read-only
    assert lines[5:7] == ["1", "1"]  # written: the worktree, the writable widening
    assert lines[7] == "['1', '2']" and lines[8] == "2"  # the init and itself
    assert (slot / "new.txt").exists() and (tmp_path / "out" / "o.txt").exists()


@needs_bwrap
def test_memory_limit_applies_inside(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path, memory_mb=200)
    proc = run_in(sandbox, slot, """
try:
    block = bytearray(400 * 1024 * 1024)
    print("allocated")
except MemoryError:
    print("MemoryError")
""")
    assert proc.stdout.strip() == "MemoryError", proc.stdout + proc.stderr
    assert sandbox.describe()["limits"] == {"memory_mb": 200}


# -- the runner and the checks inside it -----------------------------------------------------


def turn_request(tmp_path: Path, slot: Path, timeout: float = 30) -> TurnRequest:
    """A turn of one agent in ``slot`` (the sandbox tests' and the start tests')."""
    state = tmp_path / "state"
    return TurnRequest(task_id="t", title="t", iteration=1, prompt="p", worktree=slot,
                       home=tmp_path / "agent-home", state_dir=state,
                       prompt_file=state / "prompt.md", usage_file=state / "usage.json",
                       log_path=tmp_path / "logs" / "turn.log",
                       parent_env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")},
                       timeout_s=timeout)


@needs_bwrap
def test_is_sandbox_is_set_only_in_a_sandboxed_turn(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path)
    script = 'import os; open("seen.txt", "a").write(os.environ.get("IS_SANDBOX", "-") + "\\n")'
    config = AgentConfig(name="x", adapter="exec", command=(sys.executable, "-c", script))
    request = turn_request(tmp_path, slot)
    for contain in (Containment("pidns", sandbox=sandbox), Containment("group")):
        result = run_turn(ExecAdapter(), config, request, containment=contain)
        assert result.exit_code == 0, result.usage.error
    assert (slot / "seen.txt").read_text().split() == ["1", "-"]


@needs_bwrap
def test_a_missing_agent_is_127_with_the_fix_message(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path)
    config = AgentConfig(name="x", adapter="exec", command=("no-such-agent-cli",))
    result = run_turn(ExecAdapter(), config, turn_request(tmp_path, slot),
                      containment=Containment("pidns", sandbox=sandbox))
    assert result.exit_code == 127 and "Fix:" in (result.usage.error or "")


@needs_bwrap
def test_a_timed_out_turn_leaves_nothing_running(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path)
    token = f"sandbox-daemon-{os.getpid()}"
    script = (f"import subprocess, sys, time; subprocess.Popen(['setsid', sys.executable, '-c', "
              f"'import time; time.sleep(60)', '{token}']); time.sleep(60)")
    config = AgentConfig(name="x", adapter="exec", command=(sys.executable, "-c", script))
    start = time.monotonic()
    result = run_turn(ExecAdapter(), config, turn_request(tmp_path, slot, timeout=1.5),
                      containment=Containment("pidns", sandbox=sandbox), kill_grace_s=1)
    assert result.timed_out and time.monotonic() - start < 20
    time.sleep(0.3)
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, token)]
    assert alive == []


def _cmdline_has(pid: str, token: str) -> bool:
    try:
        return token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@needs_bwrap
def test_checks_run_in_the_sandbox_with_their_own_home(tmp_path: Path) -> None:
    sandbox, slot = sandbox_of(tmp_path)
    env = {"PATH": os.environ["PATH"], "HOME": str(sandbox.check_home)}
    result = run_checks(["touch made-by-check && touch $HOME/cache && test ! -e ../../../../a.txt"
                         " && ! touch ../../../../x"],
                        slot, env, timeout_s=30, containment=Containment("pidns", sandbox=sandbox))
    assert result.ok, result.failure_text()
    assert (slot / "made-by-check").exists()
    assert sandbox.check_home is not None and (sandbox.check_home / "cache").exists()


# -- choosing it, and the config ------------------------------------------------------------


def test_enabled_true_without_bubblewrap_is_an_error_auto_warns(tmp_path: Path) -> None:
    layout, _ = make_layout(tmp_path)
    env = {"PATH": str(tmp_path / "empty")}
    with pytest.raises(InvalidInput) as exc:
        choose(SandboxSettings(enabled=True), layout, env)
    assert "bubblewrap is not installed" in str(exc.value)
    sandbox, why = choose(SandboxSettings(), layout, env)
    assert sandbox is None and "bubblewrap is not installed" in why
    assert choose(SandboxSettings(enabled=False), layout, os.environ)[0] is None


@pytest.mark.parametrize(("table", "expected"), [
    ({"network": ["pypi.org"]}, "[sandbox] network[0] must be host:port"),
    ({"writable": ["relative/path"]}, "[sandbox] writable[0] must be an absolute path"),
    ({"enabled": "yes"}, "[sandbox] enabled"),
    ({"memory_mb": 0}, "[sandbox] memory_mb must be at least 1"),
    ({"nework": []}, "did you mean 'network'"),
])
def test_sandbox_table_errors_name_the_key(table: dict[str, object], expected: str) -> None:
    problems = check_config({"prefix": "tm", "sandbox": table})
    assert any(expected in p for p in problems), problems


def test_a_valid_sandbox_table_passes() -> None:
    assert check_config({"prefix": "tm", "sandbox": {
        "enabled": "auto", "read_only": ["~/.cargo", "/opt/sdk"], "writable": ["~"],
        "network": ["pypi.org:443", "[::1]:8080"], "memory_mb": 4096,
        "max_processes": 512}}) == []


def test_widenings_are_described() -> None:
    settings = SandboxSettings(read_only=("~/.cargo",), writable=("/data",))
    assert settings.widenings() == {"read_only": ["~/.cargo"], "writable": ["/data"]}
    assert SandboxSettings().widenings() == {}
    assert json.dumps(Sandbox("bwrap", "python3", (), (), (), settings).describe())


@needs_bwrap
@pytest.mark.parametrize("toolchains", [True, False])
def test_toolchains_under_home_are_shown_read_only_and_the_rest_stays_hidden(
        tmp_path: Path, toolchains: bool) -> None:
    """A pyenv python (a virtualenv's interpreter links into ~/.pyenv) must run in the
    sandbox, or every check of a Python project fails; ~/.ssh stays hidden."""
    layout, slot = make_layout(tmp_path)
    home = tmp_path / "home"
    tool = home / ".pyenv" / "versions" / "3.x" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("SECRET KEY")
    sandbox, why = choose(SandboxSettings(toolchains=toolchains), layout, os.environ)
    assert sandbox is not None, why
    script = f"""
import pathlib, subprocess
try:
    print(subprocess.run([{str(tool)!r}], capture_output=True, text=True).stdout.strip())
except OSError as exc:
    print("tool missing", type(exc).__name__)
try:
    print(pathlib.Path({str(home / '.ssh' / 'id_rsa')!r}).read_text())
except OSError:
    print("ssh hidden")
try:
    pathlib.Path({str(tool)!r}).write_text("changed")
    print("tool written")
except OSError:
    print("tool read-only")
"""
    out = run_in(sandbox, slot, script).stdout
    assert "ssh hidden" in out and "SECRET" not in out and "tool written" not in out, out
    assert ("tool ran" in out) is toolchains, out


@needs_bwrap
def test_programs_under_tmp_named_by_a_check_or_a_link_are_shown(tmp_path: Path) -> None:
    """/tmp is private in the sandbox: a checkout (and its venv, its npm packages) under /tmp
    must still run there: a check naming ``<venv>/bin/python`` by its path, and an agent
    started through ``node_modules/.bin/NAME`` (a link into its package)."""
    sandbox, slot = sandbox_of(tmp_path)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib").mkdir()
    (venv / "lib" / "data.txt").write_text("venv data\n")
    tool = venv / "bin" / "tool"
    tool.write_text(f"#!/bin/sh\ncat {venv / 'lib' / 'data.txt'}\n")
    tool.chmod(0o755)
    check = sandbox.command(["bash", "-c", f'X=1 "{tool}" --flag'], Mounts.for_worktree(slot),
                            cwd=slot, env=os.environ)
    proc = subprocess.run(check, cwd=slot, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.stdout == "venv data\n", proc.stderr
    package = tmp_path / "agents" / "node_modules" / "@scope" / "cli"
    package.mkdir(parents=True)
    dep = tmp_path / "agents" / "node_modules" / "dep-linux-x64"  # a package it needs
    dep.mkdir(parents=True)
    (dep / "bin.txt").write_text("agent ran\n")
    (package / "cli.sh").write_text(f"#!/bin/sh\ncat {dep / 'bin.txt'}\n")
    (package / "cli.sh").chmod(0o755)
    link = tmp_path / "agents" / "node_modules" / ".bin" / "cli"
    link.parent.mkdir()
    link.symlink_to("../@scope/cli/cli.sh")
    agent = sandbox.command([str(link)], Mounts.for_worktree(slot), cwd=slot, env=os.environ)
    proc = subprocess.run(agent, cwd=slot, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.stdout == "agent ran\n", proc.stderr
    # an interpreter's script named by its absolute path (python /abs/agent.py)
    script = tmp_path / "agent.sh"
    script.write_text("echo script ran\n")
    argv = sandbox.command(["/bin/sh", str(script)], Mounts.for_worktree(slot), cwd=slot,
                           env=os.environ)
    proc = subprocess.run(argv, cwd=slot, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.stdout == "script ran\n", proc.stderr


# -- git's config without credentials ---------------------------------------------------------


def test_scrubbing_keeps_git_settings_and_drops_credentials(tmp_path: Path) -> None:
    from taskmill.git_config_scrub import entries, scrub_git_config
    config = tmp_path / "config"
    config.write_text(
        '[core]\n\tbare = false\n[remote "Origin"]\n'
        "\turl = https://bob:ghp_SECRET1@example.com/x.git\n"
        "\tpushurl = ssh://git@example.com/x.git\n"
        '\tfetch = +refs/heads/*:refs/remotes/Origin/*\n[credential]\n\thelper = store\n'
        '[credential "https://example.com"]\n\tusername = bob\n'
        '[http "https://example.com/"]\n\textraHeader = AUTHORIZATION: basic SECRET2\n'
        '\tsslVerify = true\n[user]\n\tname = "A \\"quoted\\" name"\n'
        '[url "https://tok:SECRET3@example.com/"]\n\tinsteadOf = https://example.com/\n')
    dest = tmp_path / "out" / "config"
    # url, pushurl (git@), helper, username, header, insteadOf's subsection
    assert scrub_git_config(config, dest) == 6
    text = dest.read_text()
    assert "SECRET" not in text and "credential" not in text
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    assert entries(dest) == [
        ("core.bare", "false"), ("remote.Origin.url", "https://example.com/x.git"),
        ("remote.Origin.pushurl", "ssh://example.com/x.git"),
        ("remote.Origin.fetch", "+refs/heads/*:refs/remotes/Origin/*"),
        ("http.https://example.com/.sslverify", "true"), ("user.name", 'A "quoted" name'),
        ("url.https://example.com/.insteadof", "https://example.com/")]


@needs_bwrap
def test_a_sandboxed_command_sees_git_config_without_credentials(tmp_path: Path) -> None:
    layout, slot = make_layout(tmp_path)
    _git(layout.repo_root, "remote", "add", "origin", "https://bob:ghp_SECRET@example.com/r.git")
    _git(layout.repo_root, "config", "http.extraheader", "AUTHORIZATION: basic SECRET")
    _git(layout.repo_root, "config", "credential.helper", "store --file /tmp/creds")
    sandbox, why = choose(SandboxSettings(), layout, os.environ)
    assert sandbox is not None, why
    assert "replaced" in sandbox.describe()
    proc = run_in(sandbox, slot, f"""
import pathlib, subprocess
print(pathlib.Path({str(layout.git_common_dir / "config")!r}).read_text())
print(subprocess.run(["git", "config", "--list"], capture_output=True, text=True).stdout)
print(subprocess.run(["git", "status", "--short", "--branch"], capture_output=True,
                     text=True).stdout)
""")
    assert proc.returncode == 0, proc.stderr
    assert "SECRET" not in proc.stdout and "credential" not in proc.stdout
    assert "remote.origin.url=https://example.com/r.git" in proc.stdout
    assert "## taskmill/t" in proc.stdout  # git still works in the worktree
    # the user's own config is untouched
    assert "ghp_SECRET" in (layout.git_common_dir / "config").read_text()


@needs_bwrap
def test_a_sandboxed_command_sees_submodules_git_config_without_credentials(
        tmp_path: Path) -> None:
    layout, slot = make_layout(tmp_path)
    upstream = make_git_repo(tmp_path / "upstream")
    for name in ("lib", "vendor/deep"):  # a name may hold slashes
        _git(layout.repo_root, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
             str(upstream), name)
        _git(layout.repo_root / name, "remote", "set-url", "origin",
             f"https://bob:ghp_SUBSECRET@example.com/{name}.git")
    sandbox, why = choose(SandboxSettings(), layout, os.environ)
    assert sandbox is not None, why
    modules = layout.git_common_dir / "modules"
    assert set(sandbox.describe()["replaced"]) >= {
        str(modules / "lib" / "config"), str(modules / "vendor" / "deep" / "config")}
    proc = run_in(sandbox, slot, f"""
import pathlib, subprocess
for name in ("lib", "vendor/deep"):
    config = pathlib.Path({str(modules)!r}) / name / "config"
    print(config.read_text())
    print(subprocess.run(["git", "config", "--file", str(config), "remote.origin.url"],
                         capture_output=True, text=True).stdout)
    print(sorted(p.name for p in config.parent.iterdir()))
""")
    assert proc.returncode == 0, proc.stderr
    assert "SUBSECRET" not in proc.stdout
    assert "https://example.com/lib.git" in proc.stdout
    assert "https://example.com/vendor/deep.git" in proc.stdout
    assert "'objects'" in proc.stdout and "'HEAD'" in proc.stdout  # the rest is shown
    # a hostile agent cannot write the copies, or anything else of the submodules' git
    hostile = run_in(sandbox, slot, f"""
import pathlib, shutil
lib = pathlib.Path({str(modules / "lib")!r})
for attempt in (lambda: (lib / "config").write_text("[core]\\n\\tfsmonitor = evil\\n"),
                lambda: (lib / "hooks" / "post-checkout").write_text("evil"),
                lambda: (lib / "HEAD").write_text("evil"),
                lambda: shutil.rmtree(lib / "objects")):
    try:
        attempt()
        print("WROTE")
    except OSError:
        print("refused")
""")
    assert hostile.returncode == 0, hostile.stderr
    assert hostile.stdout.split() == ["refused"] * 4
    for name in ("lib", "vendor/deep"):  # the user's own configs are untouched
        assert "ghp_SUBSECRET" in (modules / name / "config").read_text()
    assert (modules / "lib" / "HEAD").read_text() != "evil"
    assert (modules / "lib" / "objects").is_dir()
