"""Check results remembered by tree: a tree already checked with the same commands (and the
same check environment) is not checked again.

The key is the tree's hash, the commands and a digest of the checks' environment: the same
content checked the same way gives the same verdict (a flaky suite aside, which is why a red
verdict is kept only in memory, for the run that saw it, and a green one may also be kept on
disk, as JSON, so that a later run does not check the same tree again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checks import ChecksResult

CACHE_FILE = "check-cache.json"
"""Its usual name, in the run directory (``.taskmill/run``)."""
MAX_PERSISTED = 2000
"""Green verdicts kept on disk (the newest)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failure: str = ""
    """The failing checks' commands and the tail of their output (red only)."""
    result: ChecksResult | None = None
    """The run's result, when it was run by this process."""
    cached: bool = False
    """Answered from the cache, not run."""


def cache_key(tree: str, commands: Sequence[str], env: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for part in (tree, *commands):
        digest.update(part.encode("utf-8", errors="surrogateescape") + b"\0")
    digest.update(b"\1")
    for name in sorted(env):
        digest.update(f"{name}={env[name]}".encode("utf-8", errors="surrogateescape") + b"\0")
    return digest.hexdigest()


class CheckCache:
    """Verdicts by :func:`cache_key`; with ``path``, green ones are also written there."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._memory: dict[str, Verdict] = {}
        self._green: list[str] = self._load()
        """Keys of the green verdicts on disk, oldest first."""
        for key in self._green:
            self._memory[key] = Verdict(True)

    def _load(self) -> list[str]:
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # missing or damaged: a cache, nothing is lost
        keys = data.get("green") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            return []
        return [k for k in keys if isinstance(k, str)][-MAX_PERSISTED:]

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            return self._memory.get(key)

    def put(self, key: str, verdict: Verdict) -> None:
        """Remember ``verdict`` (a cancelled run is not a verdict: the caller keeps it out)."""
        with self._lock:
            self._memory[key] = verdict
            if not verdict.ok or self.path is None:
                return
            if key in self._green:
                self._green.remove(key)
            self._green.append(key)
            del self._green[:-MAX_PERSISTED]
            self._save()

    def _save(self) -> None:
        assert self.path is not None
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):  # best effort: only a cache
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"green": self._green}), encoding="utf-8")
            os.replace(tmp, self.path)
