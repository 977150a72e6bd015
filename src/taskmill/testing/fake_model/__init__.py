"""A scripted model server that real coding-agent CLIs can be pointed at, offline.

One HTTP server speaks the Anthropic Messages, OpenAI Responses, OpenAI Chat Completions
and Gemini APIs (streamed and not), answers from a script (see :mod:`.script`), and logs
every request. ``docs/agents.md`` says how to point each CLI at it.
"""

from taskmill.testing.fake_model.router import ModelRequest, Plan, Router
from taskmill.testing.fake_model.script import (
    Reply,
    Script,
    ScriptError,
    SideConfig,
    Turn,
    Usage,
    load_script,
    parse_script,
)
from taskmill.testing.fake_model.server import FakeModelServer, main, serve
from taskmill.testing.fake_model.tools import ToolCall, ToolSpec, build_call, find_cwd

__all__ = [
    "FakeModelServer",
    "ModelRequest",
    "Plan",
    "Reply",
    "Router",
    "Script",
    "ScriptError",
    "SideConfig",
    "ToolCall",
    "ToolSpec",
    "Turn",
    "Usage",
    "build_call",
    "find_cwd",
    "load_script",
    "main",
    "parse_script",
    "serve",
]
