"""The Temporal executor: the mill's task workflows on a Temporal cluster, their activities on
``taskmill worker`` processes (one per machine, each with its own clone of the shared remote).

- :mod:`.spec`: what a task workflow is given (and how it travels), names of queues and ids;
- :mod:`.workflow`: :class:`~.workflow.TaskWorkflow`, the task policy as a workflow;
- :mod:`.worker`: ``taskmill worker``: the activities, run on a clone;
- :mod:`.remote_git`: the clone, task branches on the remote, landing by compare-and-swap push;
- :mod:`.executor`: the client side of ``taskmill run --executor temporal``;
- :mod:`.mill`: :class:`~.mill.TemporalMill`, the scheduler dispatching to it;
- :mod:`.cluster`: what runs where (``taskmill status``, the dashboard).

``temporalio`` is an optional dependency (``pip install 'taskmill[temporal]'``); nothing here
is imported by the embedded default (SQLite + threads).
"""
