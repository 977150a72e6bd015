"""Shared CLI plumbing: the context object, the ``--json`` option and error reporting.

Commands are thin: they parse options, open the project and call one library function.
Heavy modules (rich, the ledger) are imported inside functions so ``taskmill --help``
stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .context import (
    Ctx,
    dumps,
    emit_json,
    emit_json_items,
    emit_json_texts,
    fail,
    known_error,
    parse_json_option,
)

__all__ = ["Ctx", "dumps", "emit_json", "emit_json_items", "emit_json_texts", "fail", "get_ctx", "json_option", "parse_json_option"]

F = TypeVar("F", bound=Callable[..., Any])


def get_ctx() -> Ctx:
    obj = click.get_current_context().find_object(Ctx)
    assert obj is not None
    return obj


def json_option(fn: F) -> F:
    """Add ``--json`` and turn taskmill errors into messages and exit codes."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        ctx = get_ctx()
        ctx.json = as_json or ctx.json
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as exc:
            if known_error(exc) is not None:
                fail(exc, ctx.json)
            raise
        finally:
            ctx.close()

    return wrapper  # type: ignore[return-value]
