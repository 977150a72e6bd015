"""A throw-away PostgreSQL server for tests and trials: Debian's ``postgresql`` package (or
any PostgreSQL whose ``initdb`` and ``postgres`` can be found), ``initdb`` into a temporary
directory, listening on 127.0.0.1 and a free port only (no Unix socket), trusted local
logins, durability switched off (it is thrown away). Stopped by whoever started it.

``initdb`` and ``postgres`` refuse to run as root: run as root (CI), the server runs as an
unprivileged user (``postgres`` when the package made one, else ``nobody``), its directory
owned by that user.

In Python::

    with PostgresServer.start() as server:
        url = server.create_database("mine")   # postgresql://taskmill@127.0.0.1:PORT/mine

From a shell, ``python -m taskmill.testing.postgres`` starts one, prints its URL and runs
until interrupted.

The binaries are looked for in ``$TASKMILL_PG_BIN``, then on ``PATH``, then in Debian's
``/usr/lib/postgresql/<version>/bin`` (the newest). ``make test`` installs the package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SUPERUSER = "taskmill"
START_TIMEOUT_S = 60.0
UNPRIVILEGED_USERS = ("postgres", "nobody")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs on this machine (or they would not start)."""


def find_bin_dir(env: Mapping[str, str]) -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (None: none found)."""
    given = env.get("TASKMILL_PG_BIN")
    if given:
        return Path(given)
    on_path = shutil.which("initdb", path=env.get("PATH"))
    if on_path and shutil.which("postgres", path=env.get("PATH")):
        return Path(os.path.realpath(on_path)).parent
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted((p for p in debian.iterdir() if (p / "bin" / "initdb").exists()),
                          key=lambda p: int(p.name) if p.name.isdigit() else 0)
        if versions:
            return versions[-1] / "bin"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged_user() -> pwd.struct_passwd:
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root, and no unprivileged user (postgres, nobody) "
                              "to run the PostgreSQL server as")


class PostgresServer:
    """One running server (see the module's text). ``url`` connects as the superuser to
    the ``postgres`` database; :meth:`create_database` makes more."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes],
                 bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self.process = process
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{name}"

    @classmethod
    def start(cls, *, env: Mapping[str, str] | None = None,
              settings: Mapping[str, str] | None = None) -> PostgresServer:
        """initdb into a new temporary directory and start the server on a free port."""
        env = dict(os.environ if env is None else env)
        bin_dir = find_bin_dir(env)
        if bin_dir is None or not (bin_dir / "initdb").exists():
            raise PostgresUnavailable(
                "PostgreSQL's initdb was not found: install Debian's postgresql package "
                "(`make test` does), or set TASKMILL_PG_BIN to the directory holding it")
        run_as: dict[str, Any] = {}
        root = Path(tempfile.mkdtemp(prefix="taskmill-pg-"))
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(root, user.pw_uid, user.pw_gid)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = str(root)
        data = root / "data"
        try:
            subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                env=env, cwd=root, check=True, capture_output=True, **run_as)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"initdb failed: {exc.stderr.decode(errors='replace')}") \
                from exc
        options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "",
                   "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                   "max_connections": "200", **(settings or {})}
        last_error = ""
        for _ in range(5):  # the free port may be taken between looking and listening
            port = free_port()
            args = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
            for key, value in options.items():
                args += ["-c", f"{key}={value}"]
            log = (root / "server.log").open("ab")
            process = subprocess.Popen(args, env=env, cwd=root, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       **run_as)
            log.close()
            server = cls(root, port, process, bin_dir)
            if server.wait_ready():
                return server
            last_error = server.log_tail()
            server.stop()
            root.mkdir(exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"the PostgreSQL server did not start: {last_error}")

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if self._accepts_logins():
                return True
            time.sleep(0.05)
        return False

    def _accepts_logins(self) -> bool:
        try:
            import psycopg
        except ImportError:  # the port is open: as good as it gets without a client
            return True
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def log_tail(self, lines: int = 20) -> str:
        path = self.root / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def create_database(self, name: str) -> str:
        """Create database ``name`` (with PostgreSQL's ``createdb``); its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and '_' only")
        subprocess.run([str(self.bin_dir / "createdb"), "-h", self.host, "-p", str(self.port),
                        "-U", SUPERUSER, name], check=True, capture_output=True)
        return self.database_url(name)

    def stop(self) -> None:
        """Stop the server (a fast shutdown, then a kill) and remove its directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.testing.postgres",
        description="Start a throw-away PostgreSQL server; print its URL; stop it on Ctrl-C.")
    parser.add_argument("--database", default="taskmill", help="a database to create")
    args = parser.parse_args(argv)
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with server:
        print(server.create_database(args.database), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
