"""taskmill's own agents, store, executor and lander, registered through the same hooks as a
plugin's. By import path: nothing is imported until it is used."""

from __future__ import annotations

from .hookspecs import Register, hookimpl

AGENTS = {
    "exec": "taskmill.agents.exec:ExecAdapter",
    "claude": "taskmill.agents.claude:ClaudeAdapter",
    "codex": "taskmill.agents.codex:CodexAdapter",
    "gemini": "taskmill.agents.gemini:GeminiAdapter",
    "opencode": "taskmill.agents.opencode:OpencodeAdapter",
    "qwen": "taskmill.agents.qwen:QwenAdapter",
    "aider": "taskmill.agents.aider:AiderAdapter",
    "scripted": "taskmill.agents.scripted:ScriptedAgent",
}


@hookimpl(tryfirst=True)
def register_agents(register: Register) -> None:
    for name, path in AGENTS.items():
        register(name, path)


@hookimpl(tryfirst=True)
def register_stores(register: Register) -> None:
    register("sqlite", "taskmill.ledger.sqlite:SqliteStore")
    register("memory", "taskmill.ledger.memory:MemoryStore")
    register("postgres", "taskmill.ledger.postgres:PostgresStore")


@hookimpl(tryfirst=True)
def register_executors(register: Register) -> None:
    register("threads", "taskmill.mill.executor_threads:ThreadExecutor")
    register("temporal", "taskmill.temporal.executor:TemporalExecutor")


@hookimpl(tryfirst=True)
def register_landers(register: Register) -> None:
    register("merge-queue", "taskmill.mill.land:MergeQueue")
