"""The store contract (``store_contract.py``) for the SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from store_contract import StoreContract
from taskmill.ledger import LedgerStore
from taskmill.ledger.sqlite import SqliteStore


class TestSqliteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self) -> LedgerStore:
        return SqliteStore.open(self.dir / "ledger.db")


class TestSqliteStoreInMemory(StoreContract):
    def make_store(self) -> LedgerStore:
        return SqliteStore.memory()
