"""The ledger in git: ``taskmill sync`` shares it through the repository's remotes.

The ledger's database stays out of git; its state is exported to the ref
``refs/taskmill/ledger`` (one file per task, see :mod:`.snapshot`), pushed to and fetched
from a remote, and two clones' changes are merged field by field (:mod:`.merge`) and imported
all or nothing (:mod:`.engine`). Git plumbing: :mod:`.gitstore`.
"""

from __future__ import annotations

from .engine import SyncReport, open_ledger, refuse_empty_clone, sync
from .gitstore import LEDGER_REF
from .merge import SyncConflict

__all__ = ["LEDGER_REF", "SyncConflict", "SyncReport", "open_ledger", "refuse_empty_clone",
           "sync"]
