"""The PostgreSQL server the tests share (:mod:`taskmill.testing.postgres`): started on first
use, one per test session (per xdist worker), stopped by the session fixture in
``conftest.py``. Each store gets a schema of its own, so tests never see each other's data.
Without PostgreSQL on the machine the tests that need it skip, saying why."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import pytest

from taskmill.testing.postgres import PostgresServer, PostgresUnavailable

if TYPE_CHECKING:
    from taskmill.ledger.postgres import PostgresStore

DATABASE = "taskmill_tests"

_server: PostgresServer | None = None
_url: str | None = None
_problem: str | None = None
_names = itertools.count(1)


def database_url() -> str:
    """The tests' database on the shared server (started now if it is not yet)."""
    global _server, _url, _problem
    if _url is not None:
        return _url
    if _problem is not None:
        pytest.skip(_problem)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _problem = "psycopg is not installed (pip install 'taskmill[postgres]')"
        pytest.skip(_problem)
    try:
        _server = PostgresServer.start()
    except PostgresUnavailable as exc:
        _problem = f"no PostgreSQL server: {exc}"
        pytest.skip(_problem)
    _url = _server.create_database(DATABASE)
    return _url


def open_store(url: str, schema: str | None = None) -> PostgresStore:
    """``PostgresStore.open`` (imported here: without psycopg the tests skip, not fail)."""
    database_url()
    from taskmill.ledger.postgres import PostgresStore

    return PostgresStore.open(url) if schema is None else PostgresStore.open(url, schema=schema)


def new_database() -> str:
    """The URL of a new, empty database on the shared server (a ledger of its own, in the
    default schema, as a user's would be)."""
    database_url()
    assert _server is not None
    return _server.create_database(f"db{os.getpid()}_{next(_names)}")


def new_schema() -> str:
    """A schema name no other store of this session uses."""
    return f"t{os.getpid()}_{next(_names)}"


_open: list[PostgresStore] = []
_free: list[PostgresStore] = []
"""Stores given back, their connections open, to empty and use again (much faster than
making a schema, or connecting)."""
TABLES = ("tasks", "labels", "deps", "comments", "events", "meta", "plan_keys", "attempts",
          "order_slots")


def new_store() -> PostgresStore:
    """A store on an empty schema of its own; its ``close`` gives it back (the connections
    are closed by :func:`stop_server`)."""
    url = database_url()
    from taskmill.ledger.postgres import PostgresStore

    if _free:
        store = _free.pop()
        store.reset()
    else:
        store = PostgresStore.open(url, schema=new_schema())
        store.close = lambda: _give_back(store)  # type: ignore[method-assign]
    store.conn.execute("; ".join(f"DELETE FROM {t}" for t in TABLES))
    _open.append(store)
    return store


def _give_back(store: PostgresStore) -> None:
    if store in _open:
        _open.remove(store)
        _free.append(store)


def close_stores() -> None:
    """Give back every store :func:`new_store` gave."""
    for store in list(_open):
        _give_back(store)


def stop_server() -> None:
    global _server, _url
    close_stores()
    while _free:
        _free.pop().conn.close()
    if _server is not None:
        _server.stop()
    _server, _url = None, None
