"""Speculation: the next batch's checks run on top of the batch ahead, in parallel with it.

While the merge queue checks a batch, the branches waiting behind it are merged onto that
batch's last commit (``git merge-tree``, no working tree) and the project checks run on the
result at the same time, in a checkout of their own (Zuul's speculative gating). When the
batch ahead lands whole, the target's tip is the commit they were merged onto: the next
batch's tree is the one already checked, and its verdict is ready (or on its way). When the
batch ahead does not land whole (red, bisected, a conflict, the target moved), the tip is
another commit: the speculation is discarded (its run cut) and nothing of it is used.

Nothing here decides anything: a speculative run's result is only ever used for the exact
tree it was run on (by hash), as a check result of that tree, by the batching lander's own
verdict logic (:mod:`taskmill.mill.batch`). So what lands, and that the target is never red,
is exactly as without speculation; only when the checks run changes.

``[merge] speculate``: ``"auto"`` (the default) speculates when the machine has more than
two cores (on two, the two suite runs would share them and each would be slower), ``true``
always, ``false`` never.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..locks import FileLock
from .checks import ChecksResult

Emit = Callable[..., None]
RunChecks = Callable[["Speculation"], ChecksResult]
"""``run(spec)``: the project checks on ``spec.commit`` in the speculative checkout (cut
when ``spec.cancel`` is set)."""

LOCK_NAME = "speculate.lock"
"""Next to the merge lock: held while the speculative checkout is in use (a second run on
the same repository does not speculate at the same time: it checks in the usual way)."""


def speculates(setting: bool | str, cpus: int | None) -> bool:
    """Whether ``[merge] speculate`` is on with ``cpus`` cores (None: not known)."""
    if setting == "auto":
        return cpus is not None and cpus > 2
    return setting is True


@dataclass
class Speculation:
    """One speculative check run: ``tasks`` merged onto ``base`` (the last commit of the
    batch ``ahead``), checked on ``commit`` (whose tree is ``tree``)."""

    key: str
    """The check cache key of ``tree`` (tree, commands, check environment)."""
    base: str
    ahead: list[str]
    tasks: list[str]
    """The tasks merged (in order; those that conflict or bring nothing are left out)."""
    requested: list[str]
    """The tasks it was asked to speculate on, in order (``tasks`` and those left out)."""
    tree: str
    commit: str
    cancel: threading.Event = field(default_factory=threading.Event)
    result: Future[ChecksResult] = field(default_factory=Future)


class Speculator:
    """At most one speculative run at a time, on a thread of its own."""

    def __init__(self, run: RunChecks, lock_path: Path, emit: Emit) -> None:
        self.run = run
        self.lock_path = lock_path
        self.emit = emit
        self._live: Speculation | None = None
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def live(self) -> Speculation | None:
        """The speculation running or finished and not yet used or discarded."""
        with self._mutex:
            return self._live

    def start(self, spec: Speculation) -> bool:
        """Start ``spec`` (discarding the one before, superseded). Returns False when the
        speculative checkout is another run's now (nothing is started)."""
        self.discard("superseded by a newer speculation")
        self._join()  # its run is being cut: the checkout is free in a moment
        lock = FileLock(self.lock_path)
        if not lock.acquire(blocking=False):
            return False
        thread = threading.Thread(target=self._work, args=(spec, lock), daemon=True,
                                  name="taskmill-speculation")
        with self._mutex:
            self._live, self._thread = spec, thread
        self.emit("speculation_started", tasks=spec.tasks, ahead=spec.ahead, base=spec.base,
                  tree=spec.tree)
        thread.start()
        return True

    def _work(self, spec: Speculation, lock: FileLock) -> None:
        try:
            result = self.run(spec)
        except BaseException as exc:  # the waiting lander hears of it, and checks itself
            spec.result.set_exception(exc)
            return
        finally:
            lock.release()
        spec.result.set_result(result)

    def take(self, key: str, cancelled: Callable[[], bool]) -> ChecksResult | None:
        """The speculative result for the tree of ``key`` (waiting for it if it still runs),
        which is then used up. None: no speculation on that tree, or it was cut or failed
        to run (the caller checks the tree itself)."""
        with self._mutex:
            spec = self._live if self._live is not None and self._live.key == key else None
            if spec is not None:
                self._live = None
        if spec is None:
            return None
        while True:
            try:
                result = spec.result.result(timeout=0.2)
                break
            except TimeoutError:
                if cancelled():
                    spec.cancel.set()
            except Exception:  # it could not run: the lander runs the checks itself
                return None
        if result.cancelled:
            return None
        self.emit("speculation_used", tasks=spec.tasks, tree=spec.tree, passed=result.ok)
        return result

    def discard(self, why: str) -> None:
        """Drop the live speculation (its run is cut): the batch ahead did not land whole."""
        with self._mutex:
            spec, self._live = self._live, None
        if spec is None:
            return
        spec.cancel.set()
        self.emit("speculation_discarded", tasks=spec.tasks, ahead=spec.ahead, why=why)

    def close(self) -> None:
        """Discard what is live and wait for the speculative run to end."""
        self.discard("the merge queue stopped")
        self._join()

    def _join(self) -> None:
        with self._mutex:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
