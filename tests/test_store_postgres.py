"""The store contract (``store_contract.py``) for the PostgreSQL store, on a real server the
tests start (``pg_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pg_helpers
from store_contract import StoreContract
from taskmill.ledger import LedgerStore


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _close(self) -> Iterator[None]:
        yield
        pg_helpers.close_stores()

    def make_store(self) -> LedgerStore:
        return pg_helpers.new_store()
