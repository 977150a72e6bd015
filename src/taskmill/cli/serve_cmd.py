"""``taskmill serve``: the web dashboard (task graph, attempts, live view) and its JSON API."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

import click

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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any but the loopback requires the printed token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@json_option
def serve(host: str, port: int) -> None:
    """Serve the web dashboard: the task graph, every attempt with its diff and log, what
    the mill is doing now, and actions (reprioritise, reopen, unblock, comment, pause).

    On 127.0.0.1 (the default) no token is needed. Bound to any other address, a token is
    generated and printed: open the printed address once (it carries ?token=), or send
    `Authorization: Bearer TOKEN` to the JSON API under /api/ (described at
    /api/openapi.json).
    """
    import uvicorn

    from ..clock import SystemClock
    from ..web.app import create_app, new_token

    ctx = get_ctx()
    token = None if is_loopback(host) else new_token()
    app = create_app(ctx.cwd, ctx.env, SystemClock(), token=token)
    sock = _bind(host, port)
    actual_port = int(sock.getsockname()[1])
    url = f"http://{_url_host(host)}:{actual_port}/"
    info: dict[str, Any] = {"url": url + (f"?token={token}" if token else ""), "host": host,
                            "port": actual_port, "token": token,
                            "root": str(app.state.api.paths.root)}
    if ctx.json:
        click.echo(dumps(info).replace("\n", " ").replace("  ", ""))
    else:
        click.echo(f"taskmill dashboard for {info['root']}")
        click.echo(f"  open {info['url']}")
        if token:
            click.echo(f"  token: {token}  (bound to {host}: every client needs it)")
        click.echo("  Ctrl-C stops it")
    sys.stdout.flush()

    broadcaster = app.state.api.broadcaster

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            broadcaster.close_threadsafe()  # open event streams would hold the shutdown up
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)
    Server(config).run(sockets=[sock])
