"""The store contract (``store_contract.py``) for the in-memory store."""

from __future__ import annotations

from store_contract import StoreContract
from taskmill.ledger import LedgerStore
from taskmill.ledger.memory import MemoryStore


class TestMemoryStore(StoreContract):
    def make_store(self) -> LedgerStore:
        return MemoryStore()
