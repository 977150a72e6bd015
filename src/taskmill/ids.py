"""Task ids: ``<prefix>-<short base36 hash>``.

The hash covers the title, the creation time and a random nonce, so tasks created on two
branches, or by two agents at once, do not collide. The length grows with the ledger (4
characters for a small ledger, more as it fills) and a collision inside one ledger is
resolved by the caller retrying with a new nonce and a longer length.
"""

from __future__ import annotations

import re

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$")


def base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)) or "0"


def hash_length(task_count: int) -> int:
    """A length that keeps the chance of a collision in one ledger small."""
    if task_count < 1_000:
        return 4
    if task_count < 30_000:
        return 5
    if task_count < 1_000_000:
        return 6
    return 7


def new_id(prefix: str, title: str, created_at: str, *, length: int, nonce: str | None = None) -> str:
    import hashlib  # here, not at the top: reading commands never make an id
    import secrets

    seed = f"{title}\x00{created_at}\x00{nonce or secrets.token_hex(8)}".encode()
    digest = base36(hashlib.sha256(seed).digest())
    return f"{prefix}-{digest[:length]}"


def default_prefix(repo_name: str) -> str:
    """A prefix from a repository's directory name: lower case, letters, digits and '-'."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", repo_name.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "tm-" + cleaned if cleaned else "tm"
    return cleaned[:20].rstrip("-")
