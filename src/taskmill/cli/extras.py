"""``taskmill fake-model``: the scripted model server, for trying agents with no API key."""

from __future__ import annotations

from pathlib import Path

import click

from .common import get_ctx, json_option


@click.command(name="fake-model")
@click.option("--script", "script", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The script of replies (.toml or .json); see docs/agents.md.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="0 picks a free port (printed at start).")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append every request to this NDJSON file.")
@json_option
def fake_model(script: Path, port: int, host: str, log_path: Path | None) -> None:
    """Serve Anthropic Messages, OpenAI Responses and Chat Completions, and Gemini, answering
    from a script. Point an agent at it with `base_url` in .taskmill/config.toml."""
    from ..testing.fake_model import serve

    ctx = get_ctx()
    script = script if script.is_absolute() else ctx.cwd / script
    if log_path is not None and not log_path.is_absolute():
        log_path = ctx.cwd / log_path
    serve(script, port, host=host, log_path=log_path)
