"""The mill's authority inside a turn: a capability scoped to the task being worked.

For each agent turn the mill serves a unix socket (:mod:`.server`); the ``taskmill`` CLI and
``taskmill mcp`` inside the turn find it in ``$TASKMILL_SOCKET`` and talk to it
(:mod:`.client`) instead of opening the ledger. The socket accepts only what an agent may do
(read tasks, create discovered tasks, comment as itself, update its own task's notes, add
dependencies from its task or the tasks it created); everything else is refused and the
refusal recorded (audit event ``capability_refused``). The wire format is in
:mod:`.protocol`.
"""

SOCKET_ENV = "TASKMILL_SOCKET"
"""The capability socket's path, in the environment of every agent turn."""
