"""``taskmill serve``: the web dashboard (task graph, attempts, live view) and its JSON API."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..paths import TOKEN_FILE
from .common import dumps, get_ctx, json_option


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    from ..errors import InvalidInput

    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot bind to {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           hint="pick another --port (0 takes any free one)") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", "[::]"):
        return socket.gethostname()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def write_token(run_dir: Path, token: str) -> Path:
    """``run_dir/serve.token``: the dashboard's token, readable by its owner only (0600)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TOKEN_FILE
    tmp = run_dir / f".{TOKEN_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


def remove_token(path: Path, token: str) -> None:
    """Remove the token file unless another ``taskmill serve`` has written its own since."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == token:
            path.unlink()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; on any but the loopback every request needs the "
                   "printed token (on the loopback, changes do).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--mill", "run_mill", is_flag=True,
              help="Run the mill in this process: `taskmill watch` (ready tasks worked as "
                   "they appear, the orders of .taskmill/orders fired on time), started at "
                   "once; the page starts, pauses, resumes and stops it.")
@click.option("--users", "users_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file mapping each person to a token (TOML: alice = \"TOKEN\"; or "
                   "JSON), mode 0600, outside the repository (e.g. ~/.config/taskmill/"
                   "users.toml): every request then needs a token, and acts as its person "
                   "(the audit trail names them).")
@json_option
def serve(host: str, port: int, run_mill: bool, users_file: Path | None) -> None:
    """Serve the web dashboard: the task graph, every attempt with its diff and log, what
    the mill is doing now, and actions (reprioritise, reopen, unblock, comment, pause).

    A token is generated and printed, and written to .taskmill/run/serve.token (0600).
    Changes (PATCH, POST) need it, on 127.0.0.1 too: scripts send `Authorization: Bearer
    TOKEN` to the JSON API under /api/ (described at /api/openapi.json); the page has it.
    On 127.0.0.1 (the default) reads need no token; bound to any other address every
    request does: open the printed address once (it carries ?token=).

    With --users each person opens the address with their own token (?token=THEIRS once);
    what they do from the page is done, and audited, under their name. With --mill the
    mill (`taskmill watch`) runs inside the server; Ctrl-C stops it as it stops `taskmill
    watch`.
    """
    import uvicorn

    from ..clock import SystemClock
    from ..web.app import create_app, new_token

    ctx = get_ctx()
    loopback = is_loopback(host)
    token = new_token()
    users = None
    if users_file is not None:
        from ..paths import find_repository
        from ..web.users import load_users

        users = load_users(ctx.cwd / users_file, repo_root=find_repository(ctx.cwd).root)
    app = create_app(ctx.cwd, ctx.env, SystemClock(), token=token, loopback=loopback,
                     users=users, mill={} if run_mill else None)
    sock = _bind(host, port)
    if run_mill:  # a bad order file is said here, and nothing is served (as taskmill watch)
        app.state.api.service.start(app.state.api.pool.actor)
    actual_port = int(sock.getsockname()[1])
    token_file = write_token(app.state.api.paths.run_dir, token)
    url = f"http://{_url_host(host)}:{actual_port}/"
    info: dict[str, Any] = {"url": url + ("" if loopback and users is None
                                          else f"?token={token}"),
                            "host": host, "port": actual_port, "token": token,
                            "token_file": str(token_file),
                            "root": str(app.state.api.paths.root),
                            "users": sorted(set(users.values())) if users else [],
                            "mill": run_mill}
    if ctx.json:
        click.echo(dumps(info).replace("\n", " ").replace("  ", ""))
    else:
        click.echo(f"taskmill dashboard for {info['root']}")
        click.echo(f"  open {info['url']}")
        if loopback:
            click.echo(f"  token: {token}  (changes need it: Authorization: Bearer TOKEN;"
                       f" also in {token_file})")
        else:
            click.echo(f"  token: {token}  (bound to {host}: every client needs it; also in"
                       f" {token_file})")
        click.echo("  Ctrl-C stops it")
    sys.stdout.flush()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn re-raises the signal once stopped: the token goes now (open event
            # streams end by themselves: sse-starlette watches for the shutdown)
            remove_token(token_file, token)
            service = app.state.api.service
            if service is not None:  # as taskmill run: drain, then (again) cut now
                with contextlib.suppress(Exception):
                    service.stop(f"signal {sig}")
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)
    try:
        Server(config).run(sockets=[sock])
    finally:
        remove_token(token_file, token)
