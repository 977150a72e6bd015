"""The web API keeps its contract: every route of the application, called over HTTP on a real
``taskmill serve`` with a seeded ledger, answers what its OpenAPI document says (status,
media type, and a body valid against the response schema, made strict: a field the document
does not name fails); request bodies the ledger accepts are valid against the documented
request schema and ones it refuses are not; the live stream's messages are valid
``StreamMessage``s; and the server stops promptly with a stream open.

The document's schemas are JSON Schema 2020-12 (OpenAPI 3.1), checked with ``jsonschema``.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from taskmill.web.api import ROUTES, openapi_document
from taskmill.web.app import create_app
from test_templates import UI_TEXT
from test_web_api import Seed, _start_server, _stop_server, seed_project

DOC_URI = "urn:taskmill:api"


@dataclass
class Call:
    method: str
    path: str  # the route's template, e.g. /api/tasks/{task_id}
    url: str
    status: int = 200
    body: dict[str, Any] | None = None
    body_valid: bool = True
    """Whether the document's request schema accepts the body (the ledger refuses it if not)."""


def _strict(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that names its
    properties and says nothing about others: a field the document does not name fails."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class Contract:
    """Validates instances against parts of the OpenAPI document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.strict = _strict(copy.deepcopy(doc))
        self.registry: Registry[Any] = Registry().with_resources([
            (DOC_URI, Resource(contents=self.doc, specification=DRAFT202012)),
            (DOC_URI + ":strict", Resource(contents=self.strict, specification=DRAFT202012)),
        ])

    def errors(self, pointer: list[str], instance: Any, *, strict: bool) -> list[str]:
        ref = "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)
        uri = DOC_URI + (":strict" if strict else "")
        validator = jsonschema.Draft202012Validator({"$ref": f"{uri}#/{ref}"},
                                                    registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(instance)]

    def check_response(self, call: Call, resp: httpx.Response) -> None:
        op = self.doc["paths"][call.path][call.method.lower()]
        assert resp.status_code == call.status, (call, resp.text)
        code = str(resp.status_code) if str(resp.status_code) in op["responses"] else "default"
        assert code in op["responses"], (call, resp.status_code)
        media, = op["responses"][code]["content"]
        assert resp.headers["content-type"].split(";")[0] == media, (call, resp.headers)
        errors = self.errors(["paths", call.path, call.method.lower(), "responses", code,
                              "content", media, "schema"], resp.json(), strict=True)
        assert not errors, (call.method, call.url, errors[:5])

    def check_request(self, call: Call) -> None:
        op = self.doc["paths"][call.path][call.method.lower()]
        if call.body is None:
            assert "requestBody" not in op, call
            return
        errors = self.errors(["paths", call.path, call.method.lower(), "requestBody", "content",
                              "application/json", "schema"], call.body, strict=False)
        assert (not errors) == call.body_valid, (call, errors)


def _calls(s: Seed) -> list[Call]:
    """At least one call of every route (and some of their errors), in an order that works."""
    task, attempt = "/api/tasks/{task_id}", "/api/tasks/{task_id}/attempts/{attempt_id}"
    a = s.attempts
    return [
        Call("GET", "/api/project", "/api/project"),
        Call("GET", "/api/stats", "/api/stats"),
        Call("GET", "/api/tasks", "/api/tasks"),
        Call("GET", "/api/tasks", "/api/tasks?all=1&limit=50"),
        Call("GET", "/api/tasks", "/api/tasks?status=open,in_progress&label=ui"),
        Call("GET", "/api/tasks", "/api/tasks?limit=0", 400),
        Call("GET", "/api/ready", "/api/ready?limit=5"),
        Call("GET", "/api/blocked", "/api/blocked"),
        *[Call("GET", task, f"/api/tasks/{s[k]}") for k in ("parse", "docs", "epic", "flaky",
                                                             "cli", "gone")],
        Call("GET", task, "/api/tasks/tm-nothing", 404),
        Call("GET", f"{task}/events", f"/api/tasks/{s['parse']}/events"),
        Call("GET", f"{attempt}/diff", f"/api/tasks/{s['parse']}/attempts/{a['parse2']}/diff"),
        Call("GET", f"{attempt}/diff", f"/api/tasks/{s['parse']}/attempts/{a['parse1']}/diff"),
        Call("GET", f"{attempt}/diff", f"/api/tasks/{s['cli']}/attempts/{a['cli1']}/diff", 404),
        Call("GET", f"{attempt}/log", f"/api/tasks/{s['parse']}/attempts/{a['parse2']}/log"),
        Call("GET", f"{attempt}/log",
             f"/api/tasks/{s['parse']}/attempts/{a['parse2']}/log?kind=checks"),
        Call("GET", f"{attempt}/log", f"/api/tasks/{s['flaky']}/attempts/{a['flaky1']}/log",
             403),
        Call("GET", "/api/events", "/api/events"),
        Call("GET", "/api/events", "/api/events?since=3&limit=5"),
        Call("GET", "/api/graph", "/api/graph"),
        Call("GET", "/api/graph", "/api/graph?all=1&status=open,closed,tombstone"),
        Call("GET", "/api/now", "/api/now"),
        Call("GET", "/api/mill", "/api/mill?limit=3"),
        Call("GET", "/api/workflows", "/api/workflows"),
        Call("PATCH", task, f"/api/tasks/{s['ready']}", body={"priority": 0}),
        Call("PATCH", task, f"/api/tasks/{s['ready']}",
             body={"title": "Colour the output (ANSI)", "assignee": None,
                   "checks": ["true"], "metadata": {"size": "S"}, "status": "deferred"}),
        Call("PATCH", task, f"/api/tasks/{s['ready']}", 400, body={"priority": 9},
             body_valid=False),
        Call("PATCH", task, f"/api/tasks/{s['ready']}", 400, body={"status": "tombstone"},
             body_valid=False),
        Call("PATCH", task, f"/api/tasks/{s['ready']}", 400, body={"labels": ["x"]},
             body_valid=False),
        Call("PATCH", task, f"/api/tasks/{s['ready']}", 400, body={"title": ""},
             body_valid=False),
        Call("PATCH", task, "/api/tasks/tm-nothing", 404, body={"priority": 1}),
        Call("POST", f"{task}/reopen", f"/api/tasks/{s['parse']}/reopen"),
        Call("POST", f"{task}/unblock", f"/api/tasks/{s['flaky']}/unblock"),
        Call("POST", f"{task}/unblock", f"/api/tasks/{s['flaky']}/unblock", 409),
        Call("POST", f"{task}/comments", f"/api/tasks/{s['docs']}/comments", 201,
             body={"text": "Mention the defaults.", "author": "bob"}),
        Call("POST", f"{task}/comments", f"/api/tasks/{s['docs']}/comments", 400,
             body={"author": "bob"}, body_valid=False),
        Call("GET", "/api/review", "/api/review"),
        Call("POST", "/api/findings/{finding_id}/dismiss", "/api/findings/F-00000000/dismiss",
             404, body={"reason": "wrong"}),
        Call("POST", "/api/findings/{finding_id}/dismiss", "/api/findings/F-00000000/dismiss",
             400, body={}, body_valid=False),
        Call("POST", f"{task}/approve", f"/api/tasks/{s['flaky']}/approve", 409),
        Call("POST", f"{task}/approve", "/api/tasks/tm-nothing/approve", 404),
        Call("POST", f"{task}/reject", f"/api/tasks/{s['flaky']}/reject", 409,
             body={"comment": "not this way"}),
        Call("POST", f"{task}/reject", f"/api/tasks/{s['flaky']}/reject", 400, body={},
             body_valid=False),
        Call("POST", "/api/mill/pause", "/api/mill/pause"),
        Call("GET", "/api/now", "/api/now"),
        Call("POST", "/api/mill/resume", "/api/mill/resume"),
        Call("GET", "/api/openapi.json", "/api/openapi.json"),
        # request templates (the server fixture writes .taskmill/templates/ui-text.toml)
        Call("GET", "/api/templates", "/api/templates"),
        Call("POST", "/api/tasks/from-template", "/api/tasks/from-template", 201,
             body={"template": "ui-text", "fields": {"where": "the footer", "new_text": "Bye"},
                   "after": [s["parse"]], "labels": ["web"], "priority": 1}),
        Call("POST", "/api/tasks/from-template", "/api/tasks/from-template", 400,
             body={"template": "ui-text", "fields": {"where": "the footer"}}),
        Call("POST", "/api/tasks/from-template", "/api/tasks/from-template", 404,
             body={"template": "nope"}),
        Call("POST", "/api/tasks/from-template", "/api/tasks/from-template", 400,
             body={"template": "ui-text", "priority": 7}, body_valid=False),
        # this server does not run the mill (serve --mill: tests/test_web_door.py)
        Call("POST", "/api/mill/start", "/api/mill/start", 409),
        Call("POST", "/api/mill/stop", "/api/mill/stop", 409),
        # research mode: this project has no research.toml (tests/test_research.py has one)
        Call("GET", "/api/research", "/api/research", 404),
        Call("GET", "/api/research/experiments/{n}/diff", "/api/research/experiments/1/diff",
             404),
        Call("POST", "/api/research/submit", "/api/research/submit", 400, body={"claimed": 1},
             body_valid=False),
        Call("POST", "/api/research/submit", "/api/research/submit", 404, body={"patch": "x"}),
        Call("GET", "/api/stream", "/api/stream"),
    ]


def _seed_workflows(root: Path) -> None:
    """A formula poured once, and an order that fired once (GET /api/workflows)."""
    from taskmill.clock import FixedClock
    from taskmill.formulas import load_formula, pour
    from taskmill.ledger import Ledger
    from taskmill.orders import OrderScheduler, load_orders

    tm = root / ".taskmill"
    (tm / "formulas").mkdir()
    (tm / "formulas" / "two.toml").write_text(
        'formula = "two"\n[vars.x]\n[[steps]]\nid = "a"\ntitle = "A {{ x }}"\n'
        '[[steps]]\nid = "b"\nneeds = ["a"]\ntitle = "B"\n', encoding="utf-8")
    (tm / "orders").mkdir()
    (tm / "orders" / "hourly.toml").write_text(
        '[order]\npour = "two"\nvars = { x = "{{ slot }}" }\ntrigger = "interval"\n'
        'interval = "1h"\nskip_if_open = true\n', encoding="utf-8")
    (tm / "orders" / "byhand.toml").write_text(
        '[order]\ncreate = { title = "by hand" }\ntrigger = "manual"\n', encoding="utf-8")
    with Ledger.open(tm / "taskmill.db", prefix="tm") as led:
        pour(led, load_formula(tm / "formulas" / "two.toml"), {"x": "1"}, key="k")
        clock = FixedClock()
        orders = OrderScheduler(load_orders(tm / "orders"), formulas_dir=tm / "formulas",
                                roles_dir=None, clock=clock)
        orders.arm(led)
        clock.advance(3600)
        orders.tick(led)


@pytest.fixture
def server(git_repo: Any) -> Iterator[tuple[Seed, str, str]]:
    seeded = seed_project(git_repo)
    folder = seeded.root / ".taskmill" / "templates"
    folder.mkdir(parents=True)
    (folder / "ui-text.toml").write_text(UI_TEXT, encoding="utf-8")
    proc, info = _start_server(seeded.root)
    try:
        yield seeded, info["url"].rstrip("/"), info["token"]
    finally:
        _stop_server(proc)


def _stream_messages(http: httpx.Client, url: str, count: int,
                     then: Any = None) -> list[dict[str, Any]]:
    """The first ``count`` data messages of the stream (``then()`` called after the first)."""
    out: list[dict[str, Any]] = []
    with http.stream("GET", url) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
                if len(out) == 1 and then is not None:
                    then()
                if len(out) == count:
                    break
    return out


def test_every_route_answers_what_the_openapi_document_says(
        server: tuple[Seed, str, str], tmp_path: Any) -> None:
    seeded, base, token = server
    _seed_workflows(seeded.root)
    calls = _calls(seeded)
    # every route of the application is called (a new route needs a call here)
    app = create_app(seeded.root, {}, token="t")
    routes = {(r.path, m) for r in app.routes if getattr(r, "path", "").startswith("/api/")
              for m in (getattr(r, "methods", None) or ()) if m != "HEAD"}
    assert routes == {(spec.path, spec.method) for spec in ROUTES}
    uncovered = routes - {(c.path, c.method) for c in calls}
    assert not uncovered, f"routes no call of this test covers: {sorted(uncovered)}"

    with httpx.Client(base_url=base, timeout=20,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        doc = http.get("/api/openapi.json").json()
        assert doc == openapi_document(ROUTES)
        contract = Contract(doc)
        for call in calls:
            contract.check_request(call)
            if call.path == "/api/stream":
                def change() -> None:
                    http.patch(f"/api/tasks/{quote(seeded['epic'])}", json={"priority": 3})
                    http.post("/api/mill/pause", json={})

                messages = _stream_messages(http, call.url, 3, then=change)
                assert [m["type"] for m in messages] == ["hello", "ledger", "paused"]
                for message in messages:
                    errors = contract.errors(["components", "schemas", "StreamMessage"],
                                             message, strict=True)
                    assert not errors, (message, errors)
                continue
            if call.body is None and call.method != "GET":  # changes are sent as JSON
                resp = http.request(call.method, call.url,
                                    headers={"Content-Type": "application/json"})
            else:
                resp = http.request(call.method, call.url, json=call.body)
            contract.check_response(call, resp)


def test_the_contract_check_catches_a_field_the_document_does_not_name(
        server: tuple[Seed, str, str]) -> None:
    """(The check above can fail: an undocumented field, a wrong type, a missing field.)"""
    seeded, base, _token = server
    with httpx.Client(base_url=base, timeout=20) as http:
        contract = Contract(http.get("/api/openapi.json").json())
        task = http.get(f"/api/tasks/{seeded['parse']}").json()
    pointer = ["paths", "/api/tasks/{task_id}", "get", "responses", "200", "content",
               "application/json", "schema"]
    assert not contract.errors(pointer, task, strict=True)
    assert contract.errors(pointer, {**task, "surprise": 1}, strict=True)
    assert contract.errors(pointer, {**task, "priority": "high"}, strict=True)
    assert contract.errors(pointer, {k: v for k, v in task.items() if k != "ready"},
                           strict=True)
    assert contract.errors(pointer, {**task, "attempts": [{**task["attempts"][0],
                                                           "running": "no"}]}, strict=True)


def test_the_server_stops_promptly_with_a_stream_open(git_repo: Any) -> None:
    """sse-starlette ends open streams when the server shuts down (uvicorn would otherwise wait
    its graceful-shutdown timeout, 3 s, for them)."""
    seeded = seed_project(git_repo)
    folder = seeded.root / ".taskmill" / "templates"
    folder.mkdir(parents=True)
    (folder / "ui-text.toml").write_text(UI_TEXT, encoding="utf-8")
    proc, info = _start_server(seeded.root)
    try:
        with httpx.Client(base_url=info["url"].rstrip("/"), timeout=20) as http, \
                http.stream("GET", "/api/stream") as stream:
            lines = stream.iter_lines()
            assert any(line.startswith("data: ") for line in lines)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            took = time.monotonic() - started
        assert took < 2.5, f"the server took {took:.1f}s to stop with a stream open"
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop_server(proc)


def test_serve_mill_answers_the_contract(taskmill_repo: Path) -> None:
    """``taskmill serve --mill`` (``taskmill watch`` in the server): starting and stopping it,
    its status in ``/api/project`` and in the stream's ``service`` messages, all as the
    document says; the status names the next order's slot."""
    import subprocess
    import sys

    orders = taskmill_repo / ".taskmill" / "orders"
    orders.mkdir()
    (orders / "nightly.toml").write_text(
        '[order]\ncreate = { title = "nightly" }\ntrigger = "cron"\nschedule = "0 3 * * *"\n',
        encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "taskmill", "serve", "--port", "0", "--json",
                             "--mill"], cwd=taskmill_repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline() or "{}")
        assert info["mill"] is True, proc.stderr.read() if proc.stderr else ""
        with httpx.Client(base_url=info["url"].rstrip("/"), timeout=20,
                          headers={"Authorization": f"Bearer {info['token']}"}) as http:
            contract = Contract(http.get("/api/openapi.json").json())

            def service() -> dict[str, Any]:
                resp = http.get("/api/project")
                contract.check_response(Call("GET", "/api/project", "/api/project"), resp)
                return dict(resp.json()["mill_service"])

            deadline = time.monotonic() + 20
            while service()["next_order"] is None:  # the watch has armed its order
                assert time.monotonic() < deadline, service()
                time.sleep(0.05)
            watching = service()
            assert (watching["state"], watching["orders"], watching["working"]) == (
                "watching", 1, 0)
            assert watching["next_order"].endswith("T03:00:00.000000Z")

            def stop() -> None:
                resp = http.post("/api/mill/stop", json={})
                contract.check_response(Call("POST", "/api/mill/stop", "/api/mill/stop"), resp)

            messages: list[dict[str, Any]] = []
            with http.stream("GET", "/api/stream") as stream:
                for line in stream.iter_lines():
                    assert time.monotonic() < deadline + 20, messages
                    if not line.startswith("data: "):
                        continue
                    messages.append(json.loads(line[6:]))
                    if len(messages) == 1:
                        stop()
                    last = messages[-1]
                    if last["type"] == "service" and last["service"]["state"] != "watching":
                        break
            assert messages[0]["type"] == "hello"
            assert messages[-1]["service"]["state"] in ("stopping", "stopped")
            for message in messages:
                errors = contract.errors(["components", "schemas", "StreamMessage"], message,
                                         strict=True)
                assert not errors, (message, errors)
            while service()["state"] != "stopped":
                assert time.monotonic() < deadline + 20, service()
                time.sleep(0.05)
            started = http.post("/api/mill/start", json={})
            contract.check_response(Call("POST", "/api/mill/start", "/api/mill/start"), started)
            assert started.json()["state"] == "watching"
    finally:
        _stop_server(proc)
