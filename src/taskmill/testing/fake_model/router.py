"""Stateless-ish routing of requests to scripted turns and replies.

The server sees each model call on its own. It recognises a conversation by its *opening*
(the user text before the first model output: the task prompt plus whatever context the
CLI put there) and knows how far along it is from the number of model outputs already in
the history. See :class:`Router` for the rules.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from taskmill.testing.fake_model.script import Reply, Script, Turn, Usage
from taskmill.testing.fake_model.tools import (
    NoToolError,
    ToolCall,
    ToolSpec,
    build_call,
    find_cwd,
    sample_json,
)

PlanKind = Literal["text", "tool", "error", "stall", "garbage"]


@dataclass(frozen=True)
class ModelRequest:
    """The parts of a model call the router needs, whatever the protocol."""

    protocol: str
    model: str
    opening_text: str
    """User text before the first model output in the history."""
    model_turns: int
    """How many model outputs (runs of assistant messages/items) the history holds."""
    tools: tuple[ToolSpec, ...] = ()
    context_text: str = ""
    """System prompt and all user text: where the working directory is looked for."""
    json_schema: Mapping[str, Any] | None = None
    wants_json: bool = False
    size: int = 0
    """Length of the request body, for default token counts."""
    stream: bool = False


@dataclass(frozen=True)
class Plan:
    """What to answer one request with."""

    kind: PlanKind
    usage: Usage
    text: str | None = None
    call: ToolCall | None = None
    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    stall: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    """For the request log: source, turn, reply index, cwd."""


@dataclass
class _Conversation:
    turn: Turn
    served: dict[int, int] = field(default_factory=dict)
    last_index: int = 0
    last_failed: bool = False


def _default_usage(request: ModelRequest, output: str) -> Usage:
    return Usage(input_tokens=max(1, request.size // 4), output_tokens=max(1, len(output) // 4))


class Router:
    """Maps each request to a plan, following the script.

    * A request with no tools is a side request (title, quota check, router, next-speaker
      check): it gets ``script.side.text`` (or JSON that fits the requested schema) and does
      not consume the script.
    * A request whose history has no model output starts a conversation: among the turns
      whose ``when`` is a substring of the opening text, the first such ``when`` group is
      chosen (turns without ``when`` form the fallback group). Conversation N of a group gets
      the group's N-th turn; once they are used up the last one repeats. The exception is
      a resend of an opening whose last answer was a failure: that is the client retrying,
      and it stays in its conversation.
    * A request with history continues the conversation with the same opening.
    * Reply position = number of model outputs in the history. Positions past the turn's
      end get ``script.final_text``.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self._lock = threading.Lock()
        self._started: dict[str | None, int] = {}
        self._conversations: dict[str, _Conversation] = {}

    def _groups(self, opening: str) -> list[Turn]:
        for turn in self.script.turns:
            if turn.when is not None and turn.when in opening:
                return [t for t in self.script.turns if t.when == turn.when]
        return [t for t in self.script.turns if t.when is None]

    def _start(self, key: str, opening: str) -> _Conversation | None:
        group = self._groups(opening)
        if not group:
            return None
        when = group[0].when
        n = self._started.get(when, 0)
        self._started[when] = n + 1
        conversation = _Conversation(turn=group[min(n, len(group) - 1)])
        self._conversations[key] = conversation
        return conversation

    def decide(self, request: ModelRequest) -> Plan:
        if not request.tools:
            return self._side(request)
        key = hashlib.sha256(request.opening_text.encode()).hexdigest()
        with self._lock:
            conversation = self._conversations.get(key)
            retrying = (
                conversation is not None
                and conversation.last_failed
                and conversation.last_index == request.model_turns == 0
            )
            if conversation is None or (request.model_turns == 0 and not retrying):
                conversation = self._start(key, request.opening_text)
            if conversation is None:
                text = "taskmill fake model: no scripted turn matches this conversation."
                return Plan(
                    "text", _default_usage(request, text), text=text, info={"source": "unmatched"}
                )
            index = request.model_turns
            entries = conversation.turn.position(index)
            info: dict[str, Any] = {"turn": conversation.turn.index, "reply": index}
            if entries is None:
                conversation.last_index, conversation.last_failed = index, False
                text = self.script.final_text
                return Plan(
                    "text",
                    _default_usage(request, text),
                    text=text,
                    info={**info, "source": "final"},
                )
            count = conversation.served.get(index, 0)
            conversation.served[index] = count + 1
            reply = entries[-1]
            for entry in entries:
                if entry.times is not None and count < entry.times:
                    reply = entry
                    break
                count -= entry.times or 0
            conversation.last_index, conversation.last_failed = index, reply.is_failure
        return self._plan(reply, request, {**info, "source": "script"})

    def _side(self, request: ModelRequest) -> Plan:
        text = self.script.side.text
        if request.json_schema is not None or request.wants_json:
            text = json.dumps(sample_json(request.json_schema or {"type": "object"}))
        return Plan("text", self.script.side.usage, text=text, info={"source": "side"})

    def _plan(self, reply: Reply, request: ModelRequest, info: dict[str, Any]) -> Plan:
        if reply.kind == "error":
            assert reply.status is not None
            return Plan(
                "error",
                reply.usage or Usage(0, 0),
                status=reply.status,
                retry_after=reply.retry_after,
                message=reply.message,
                info={**info, "kind": "error"},
            )
        if reply.kind == "stall":
            return Plan(
                "stall",
                reply.usage or _default_usage(request, ""),
                stall=reply.stall or 0.0,
                info={**info, "kind": "stall"},
            )
        if reply.kind == "garbage":
            return Plan("garbage", reply.usage or Usage(0, 0), info={**info, "kind": "garbage"})
        if reply.kind == "text":
            text = reply.text or ""
            usage = reply.usage or _default_usage(request, text)
            return Plan("text", usage, text=text, info={**info, "kind": "text"})
        cwd = find_cwd(request.context_text)
        info = {**info, "kind": "tool", "cwd": cwd}
        try:
            call = build_call(reply, request.tools, cwd)
        except NoToolError as exc:
            text = f"taskmill fake model: {exc}"
            return Plan(
                "text",
                reply.usage or _default_usage(request, text),
                text=text,
                info={**info, "error": str(exc)},
            )
        output = (reply.text or "") + (call.custom_input or call.arguments_json)
        usage = reply.usage or _default_usage(request, output)
        return Plan(
            "tool",
            usage,
            text=reply.text,
            call=call,
            info={**info, "tool": call.name, "arguments": dict(call.arguments)},
        )
