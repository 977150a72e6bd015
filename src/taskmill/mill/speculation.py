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
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..locks import FileLock
from .checks import ChecksResult
from .lander_checkout import Checkout

Emit = Callable[..., None]
RunChecks = Callable[["Speculation", Checkout], ChecksResult]
"""``run(spec, checkout)``: the project checks on ``spec.commit`` in ``checkout`` (cut when
``spec.cancel`` is set)."""

LOCK_NAME = "speculate-{slot}.lock"
"""Next to the merge lock: held while a speculative checkout is in use (a second run on the
same repository does not use it at the same time: it checks in the usual way)."""
SLOTS = 2
"""Speculative checkouts: the one whose result the batch being landed waits for, and the
one checking the batch behind it."""


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
    """Speculative runs on threads of their own, one per checkout (:data:`SLOTS`): the live
    one (waiting for the batch ahead to land) and one already claimed by the batch landing
    now."""

    def __init__(self, run: RunChecks, checkouts: Sequence[Checkout], lock_dir: Path,
                 emit: Emit) -> None:
        self.run = run
        self.checkouts = list(checkouts)
        self.lock_dir = lock_dir
        self.emit = emit
        self._live: Speculation | None = None
        self._slots: dict[int, tuple[threading.Thread, Speculation]] = {}
        self._mutex = threading.Lock()

    @property
    def live(self) -> Speculation | None:
        """The speculation running or finished and not yet claimed or discarded."""
        with self._mutex:
            return self._live

    def start(self, spec: Speculation) -> bool:
        """Start ``spec`` (discarding the live one, superseded). Returns False when no
        speculative checkout is free (nothing is started)."""
        self.discard("superseded by a newer speculation")
        slot = self._free_slot()
        if slot is None:
            return False
        lock = FileLock(self.lock_dir / LOCK_NAME.format(slot=slot))
        if not lock.acquire(blocking=False):  # another run's now
            return False
        thread = threading.Thread(target=self._work, args=(spec, slot, lock), daemon=True,
                                  name=f"taskmill-speculation-{slot}")
        with self._mutex:
            self._live = spec
            self._slots[slot] = (thread, spec)
        self.emit("speculation_started", tasks=spec.tasks, ahead=spec.ahead, base=spec.base,
                  tree=spec.tree)
        thread.start()
        return True

    def _free_slot(self) -> int | None:
        """A checkout no run uses (one being cut is waited for: it ends in a moment)."""
        with self._mutex:
            busy = dict(self._slots)
        for slot in range(len(self.checkouts)):
            if slot not in busy or not busy[slot][0].is_alive():
                return slot
        for slot, (thread, spec) in busy.items():
            if spec.cancel.is_set():
                thread.join()
                return slot
        return None

    def _work(self, spec: Speculation, slot: int, lock: FileLock) -> None:
        try:
            result = self.run(spec, self.checkouts[slot])
        except BaseException as exc:  # the waiting lander hears of it, and checks itself
            spec.result.set_exception(exc)
            return
        finally:
            lock.release()
        spec.result.set_result(result)

    def claim(self, key: str) -> Speculation | None:
        """The live speculation when it is on the tree of ``key`` (it is then no longer
        live: see :meth:`wait`)."""
        with self._mutex:
            spec = self._live if self._live is not None and self._live.key == key else None
            if spec is not None:
                self._live = None
        return spec

    def wait(self, spec: Speculation, cancelled: Callable[[], bool]) -> ChecksResult | None:
        """The result of a claimed speculation (waiting for it if it still runs). None: it
        was cut, or could not run (the caller checks the tree itself)."""
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
        """Discard what is live, cut every speculative run and wait for them to end."""
        self.discard("the merge queue stopped")
        with self._mutex:
            slots, self._slots = list(self._slots.values()), {}
        for thread, spec in slots:
            spec.cancel.set()
            thread.join()
