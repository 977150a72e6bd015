"""Every route of the API under ``/api/``, declared once: the application routes by it and its
OpenAPI description is generated from it (:func:`taskmill.web.openapi.openapi_document`).

``handler`` names the method of :class:`taskmill.web.api.Api` that serves the route (and is
its ``operationId``).
"""

from __future__ import annotations

from .openapi import Param, RouteSpec, array, ref

TASK_ID = Param("task_id", "path", "A task id, or a unique prefix of one.", required=True)
ATTEMPT_ID = Param("attempt_id", "path", "The attempt's id (see the task's attempts).",
                   {"type": "integer"}, required=True)
_STATUS_FILTER = Param("status", "query", "Comma-separated statuses to keep.")
_LABEL_FILTER = Param("label", "query", "Keep tasks with this label.")
_ALL = Param("all", "query", "Include tombstones.", {"type": "boolean"})

ROUTES: list[RouteSpec] = [
    RouteSpec("GET", "/api/project", "project", "The project: root, id prefix, labels, counts.",
              response=ref("Project")),
    RouteSpec("GET", "/api/stats", "stats", "Counts, readiness, attempts, tokens and cost.",
              response=ref("Stats")),
    RouteSpec("GET", "/api/tasks", "list_tasks", "List tasks (Ledger.list_tasks).",
              [_STATUS_FILTER, _LABEL_FILTER,
               Param("type", "query", "Keep tasks of this issue type."),
               Param("assignee", "query", "Keep tasks assigned to this actor."),
               Param("parent", "query", "Keep children of this task."), _ALL,
               Param("limit", "query", "At most this many.", {"type": "integer"})],
              response=array(ref("Task"))),
    RouteSpec("GET", "/api/ready", "ready", "Open tasks with nothing blocking them.",
              [Param("limit", "query", "At most this many.", {"type": "integer"})],
              response=array(ref("Task"))),
    RouteSpec("GET", "/api/blocked", "blocked",
              "Tasks held back, with what holds each and the last comment (the reason).",
              response=array(ref("BlockedTask"))),
    RouteSpec("GET", "/api/tasks/{task_id}", "show",
              "A task with its dependencies both ways, comments and every attempt.",
              [TASK_ID], response=ref("TaskFull"), errors=(404,)),
    RouteSpec("PATCH", "/api/tasks/{task_id}", "update",
              "Change fields of a task, e.g. reprioritise with {\"priority\": 0}.",
              [TASK_ID], body=ref("TaskChanges"), response=ref("Task"), errors=(400, 404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/reopen", "reopen", "Reopen a task (status -> open).",
              [TASK_ID], response=ref("Task"), errors=(404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/unblock", "unblock",
              "Unblock a task the mill marked blocked (status blocked -> open).",
              [TASK_ID], response=ref("Task"), errors=(404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/comments", "comment",
              "Add a comment; the next iteration's prompt includes it.",
              [TASK_ID], body=ref("NewComment"), response=ref("Comment"),
              errors=(400, 404), status=201),
    RouteSpec("GET", "/api/tasks/{task_id}/events", "task_events", "A task's audit trail.",
              [TASK_ID], response=array(ref("AuditEvent")), errors=(404,)),
    RouteSpec("GET", "/api/tasks/{task_id}/attempts/{attempt_id}/diff", "diff",
              "The diff an attempt produced: from the commit on the task's branch it "
              "started from to the commit it made (no_change when it made none).",
              [TASK_ID, ATTEMPT_ID], response=ref("Diff"), errors=(404, 502)),
    RouteSpec("GET", "/api/tasks/{task_id}/attempts/{attempt_id}/log", "log",
              "An attempt's agent log (or its checks log); only files under .taskmill/.",
              [TASK_ID, ATTEMPT_ID,
               Param("kind", "query", "agent (default) or checks",
                     {"type": "string", "enum": ["agent", "checks"]})],
              response=ref("Log"), errors=(403, 404)),
    RouteSpec("GET", "/api/events", "events", "The audit trail (newest last).",
              [Param("since", "query", "Only events after this seq.", {"type": "integer"}),
               Param("limit", "query", "At most this many (default 200).", {"type": "integer"})],
              response=array(ref("AuditEvent"))),
    RouteSpec("GET", "/api/graph", "graph",
              "The task graph laid out (layered DAG): nodes with positions, edges with points.",
              [_STATUS_FILTER, _LABEL_FILTER, _ALL], response=ref("Graph")),
    RouteSpec("GET", "/api/now", "now",
              "Workers and what each is doing, the merge queue, totals per agent and model, "
              "blocked tasks and why, recent mill events.", response=ref("Now")),
    RouteSpec("GET", "/api/mill", "mill", "The mill: paused or not, and its recent events.",
              [Param("limit", "query", "At most this many events (default 100).",
                     {"type": "integer"})], response=ref("Mill")),
    RouteSpec("POST", "/api/mill/pause", "pause",
              "Pause the mill: it dispatches nothing new (work in flight goes on).",
              response=ref("Paused")),
    RouteSpec("POST", "/api/mill/resume", "resume", "Resume the mill.", response=ref("Paused")),
    RouteSpec("POST", "/api/mill/start", "mill_start",
              "Start the mill this dashboard runs (`taskmill serve --mill`): `taskmill "
              "watch` in the server, working ready tasks as they appear and firing the "
              "orders (a bad order file: 400, nothing started).", response=ref("MillService"),
              errors=(400, 409)),
    RouteSpec("POST", "/api/mill/stop", "mill_stop",
              "Stop the mill this dashboard runs, as Ctrl-C stops `taskmill watch`: nothing new "
              "starts, running turns get the grace, then are cut (stopping again: at once).",
              response=ref("MillService"), errors=(409,)),
    RouteSpec("GET", "/api/templates", "templates",
              "The request templates (.taskmill/templates/NAME.toml): the kinds of work a "
              "person can ask for, with the fields to fill in.",
              response=array(ref("Template")), errors=(400,)),
    RouteSpec("POST", "/api/tasks/from-template", "from_template",
              "Ask for work: a task from a template and its fields (every field checked, "
              "nothing created when one is wrong: the error's fields say which).",
              body=ref("FromTemplate"), response=ref("Task"), errors=(400, 404), status=201),
    RouteSpec("GET", "/api/research", "research",
              "Research mode: the status (best, noise band, keep rate, spend) and every "
              "experiment of research.toml's research.", errors=(404,)),
    RouteSpec("GET", "/api/research/experiments/{n}/diff", "research_diff",
              "What an experiment changed: the diff from the best it started from.",
              [Param("n", "path", "The experiment's number.", {"type": "integer"},
                     required=True)], errors=(400, 404)),
    RouteSpec("POST", "/api/research/submit", "research_submit",
              "A contribution: {patch, claimed?, contributor?}. Applied to the current best, "
              "checked against `editable`, re-measured by taskmill; kept only on its own "
              "figures. Answers the experiment record (verdict, claimed and verified).",
              body={"type": "object", "required": ["patch"], "properties": {
                  "patch": {"type": "string"}, "claimed": {"type": "number"},
                  "contributor": {"type": "string"}}}, errors=(400, 404)),
    RouteSpec("GET", "/api/workflows", "workflows",
              "Formulas' poured instances as groups (epic and steps), and each order's last "
              "and next firing and why it did not fire.", response=ref("Workflows")),
    RouteSpec("GET", "/api/review", "review",
              "The tasks awaiting approval (diff, checks, findings, the agent's notes) and the "
              "reviewer's hit rate over [review] window_days.", response=ref("ReviewPage")),
    RouteSpec("POST", "/api/tasks/{task_id}/approve", "approve",
              "Approve a task awaiting approval: the next run lands it as it is.",
              [TASK_ID], response=ref("ApprovalDone"), errors=(404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/reject", "reject",
              "Send a task awaiting approval back to its agent with a comment (in its next "
              "prompt).", [TASK_ID], body=ref("SendBack"), response=ref("ApprovalDone"),
              errors=(400, 404, 409)),
    RouteSpec("POST", "/api/findings/{finding_id}/dismiss", "dismiss_finding",
              "Dismiss an open finding of the reviewer, with a reason (it counts against the "
              "reviewer's hit rate).",
              [Param("finding_id", "path", "The finding's id, e.g. F-1a2b3c4d.", required=True)],
              body=ref("Dismissal"), response=ref("FindingView"), errors=(400, 404)),
    RouteSpec("GET", "/api/stream", "stream",
              "Server-sent events: {type: ledger|mill|paused|hello, ...} on every change.",
              media_type="text/event-stream",
              response={"type": "string", "description": "Each event's data is a "
                        "StreamMessage (JSON); a comment line keeps the connection alive."}),
    RouteSpec("GET", "/api/openapi.json", "openapi", "This description (OpenAPI 3).",
              response={"type": "object"}),
]
