"""Task ids: ``<prefix>-<short base36 hash>``.

The hash covers the title, the creation time and a random nonce, so tasks created on two
branches, or by two agents at once, do not collide. The length grows with the ledger (4
characters for a small ledger, more as it fills) and a collision inside one ledger is
resolved by the caller retrying with a new nonce and a longer length.
"""

from __future__ import annotations

import re

from .lean_rules import base36 as base36
from .lean_rules import hash_length as hash_length
from .lean_rules import new_id as new_id

PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$")


def default_prefix(repo_name: str) -> str:
    """A prefix from a repository's directory name: lower case, letters, digits and '-'."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", repo_name.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "tm-" + cleaned if cleaned else "tm"
    return cleaned[:20].rstrip("-")
