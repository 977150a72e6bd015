"""The network allowlist (``[sandbox] network``) in a run: the mill starts its CONNECT proxy
(taskmill.netproxy), a sandboxed turn reaches an allowlisted host:port through HTTPS_PROXY
and nothing else, each refusal is an event, and the proxy's socket goes with the run."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.capability.protocol import connect_unix
from taskmill.netproxy import NetProxy
from taskmill.sandbox import availability

bwrap, why_not = availability(os.environ, os.path.realpath(sys.executable))
needs_bwrap = pytest.mark.skipif(bwrap is None, reason=f"no sandbox here: {why_not}")


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(b"echo:" + data)

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


@needs_bwrap
def test_a_sandboxed_turn_reaches_the_allowlist_only(tmp_path: Path) -> None:
    server, allowed = _echo_server()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        other = int(probe.getsockname()[1])
    repo = MillRepo(tmp_path, sandbox={"network": [f"127.0.0.1:{allowed}"],
                                       "writable": ["{spy}"]})
    cmd = agent_script(tmp_path / "agent.py", f"""
        import socket, urllib.parse
        proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
        def connect(target):
            s = socket.create_connection((proxy.hostname, proxy.port), timeout=5)
            s.sendall(("CONNECT " + target + " HTTP/1.1\\r\\n\\r\\n").encode())
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                head += s.recv(1)
            return s, head.split(b" ")[1].decode()
        found = {{}}
        s, found["allowed"] = connect("127.0.0.1:{allowed}")
        s.sendall(b"ping")
        found["echo"] = s.recv(100).decode()
        found["other"] = connect("127.0.0.1:{other}")[1]
        try:
            socket.create_connection(("127.0.0.1", {allowed}), timeout=2)
            found["direct"] = "reached"
        except OSError:
            found["direct"] = "refused"
        save("net.json", json.dumps(found))
        (WT / "feature.txt").write_text("done")
    """, spy=repo.spy)
    repo.create("tm-n", "use the registry", checks=["test -f feature.txt"])
    try:
        result = repo.run("--agent-cmd", cmd)
    finally:
        server.close()
    assert result.returncode == 0, result.describe()
    assert json.loads((repo.spy / "net.json").read_text()) == {
        "allowed": "200", "echo": "echo:ping", "other": "403", "direct": "refused"}
    assert [e["target"] for e in result.events_of("network_refused")] == [f"127.0.0.1:{other}"]
    started = result.events_of("run_started")[0]
    assert started["sandbox"]["network"] == (
        f"off except through taskmill's allowlist proxy: 127.0.0.1:{allowed}")
    assert repo.task("tm-n")["status"] == "closed"
    assert not list((repo.root / ".taskmill" / "run").glob("net-*.sock"))  # stopped with the run


def test_the_proxy_listens_on_a_long_socket_path_and_refuses_plain_http(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    refused: list[str] = []
    netproxy = NetProxy(deep / "net.sock", ["pypi.org:443"],
                        on_refused=lambda target, why: refused.append(target))
    netproxy.start()
    try:
        assert (deep / "net.sock").stat().st_mode & 0o777 == 0o600
        answers = []
        for request in (b"GET http://pypi.org/simple/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n",
                        b"CONNECT pypi.org:80 HTTP/1.1\r\n\r\n"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                connect_unix(sock, deep / "net.sock")
                sock.sendall(request)
                answers.append(sock.makefile("rb").readline().split(b" ")[1])
    finally:
        netproxy.stop()
    assert answers == [b"403", b"403"]
    assert refused == ["http://pypi.org/simple/", "pypi.org:80"]
    assert not (deep / "net.sock").exists()
