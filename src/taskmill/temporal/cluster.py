"""What runs where under the Temporal executor, read from the cluster itself: the workers
polling the shared queue (their last poll is their heartbeat to the cluster), and for each
running task workflow the worker its current activity runs on and that activity's last
heartbeat. ``taskmill status`` and the dashboard show it; nothing is stored in the ledger."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from .spec import TASK_QUEUE, WORKFLOW_TYPE, task_of


def _iso(ts: Any) -> str | None:
    if ts is None or not ts.seconds:
        return None
    value: datetime = ts.ToDatetime()
    return value.isoformat(timespec="seconds") + "Z"


async def _view(address: str, namespace: str, task_queue: str, timeout: float) -> dict[str, Any]:
    client = await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout)
    workers: dict[str, str | None] = {}
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW):
        desc = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
        for poller in desc.pollers:
            seen = _iso(poller.last_access_time)
            if poller.identity not in workers or (seen or "") > (workers[poller.identity] or ""):
                workers[poller.identity] = seen
    tasks = []
    query = (f"WorkflowType='{WORKFLOW_TYPE}' AND ExecutionStatus='Running' "
             f"AND TaskQueue='{task_queue}'")
    async for wf in client.list_workflows(query):
        described = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
        raw = described.raw_description
        task: dict[str, Any] = dict(workflow=wf.id, task=task_of(wf.id, task_queue), worker=None,
                                    activity=None, last_heartbeat=None, attempt=None)
        for pending in raw.pending_activities:
            task.update(worker=pending.last_worker_identity or None,
                        activity=pending.activity_type.name,
                        last_heartbeat=_iso(pending.last_heartbeat_time)
                        or _iso(pending.last_started_time),
                        attempt=pending.attempt)
        tasks.append(task)
    return {"address": address,
            "workers": [{"worker": name, "last_seen": seen}
                        for name, seen in sorted(workers.items())],
            "tasks": sorted(tasks, key=lambda t: str(t["task"]))}


def cluster_view(address: str, *, namespace: str = "default", task_queue: str = TASK_QUEUE,
                 timeout: float = 10.0) -> dict[str, Any]:
    """``{"workers": [{worker, last_seen}], "tasks": [{task, worker, activity,
    last_heartbeat}]}``; ``{"error": ...}`` when the cluster cannot be read."""
    try:
        return asyncio.run(_view(address, namespace, task_queue, timeout))
    except Exception as exc:
        return {"address": address, "error": f"cannot read the Temporal cluster: {exc}",
                "workers": [], "tasks": []}
