"""The schema of ``.taskmill/config.toml`` (pydantic v2), and its errors as one-line messages.

Every table and key is checked when the config is loaded, by every command that loads it;
a problem names the file, the table and the key, says what was wrong and what is valid (with
a "did you mean" for a misspelled key or table). This module is imported only by
:func:`taskmill.config.load_config`, so commands that never read the config (``--help``)
do not pay for pydantic.

An ``[agents.NAME]`` table is checked against its adapter: the keys every adapter takes
(:class:`AgentTable`) plus the options that adapter reads (``ADAPTER_TABLES``). A third-party
adapter (entry-point group ``taskmill.agents``) gets the common keys checked and any other
key passed through in ``options``.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .agents.base import AgentConfig
from .config import BUILTIN_AGENTS, agent_config
from .errors import ConfigError

NonEmpty = Annotated[str, Field(min_length=1)]
PositiveInt = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]


def _env_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PydanticCustomError("taskmill", "must be a string (or number), got {value}",
                                  {"value": repr(value)})
    return str(value)


def _command_line(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise PydanticCustomError("taskmill", "is not a valid command line ({why}): {value}",
                                      {"why": str(exc), "value": repr(value)}) from None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PydanticCustomError(
        "taskmill", "must be a list of strings or a command line string, got {value}",
        {"value": repr(value)})


def _str_or_list(value: object) -> str | list[str]:
    if isinstance(value, str) or (isinstance(value, list)
                                  and all(isinstance(v, str) for v in value)):
        return value
    raise PydanticCustomError("taskmill", "must be a string or a list of strings, got {value}",
                              {"value": repr(value)})


EnvValue = Annotated[str, PlainValidator(_env_value)]
CommandLine = Annotated[tuple[str, ...], PlainValidator(_command_line)]
StrOrList = Annotated[str | list[str], PlainValidator(_str_or_list)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- [checks] and [run] ---------------------------------------------------------------------


class ChecksTable(_Table):
    commands: list[str] = []
    """Project checks the merge queue runs before landing a branch."""
    env: dict[str, EnvValue] = {}
    """Variables set for every check command."""
    pass_env: list[NonEmpty] = []
    """Variables copied from taskmill's own environment into the checks' environment."""

    @field_validator("pass_env")
    @classmethod
    def _not_virtual_env(cls, value: list[str]) -> list[str]:
        if "VIRTUAL_ENV" in value:
            raise PydanticCustomError(
                "taskmill", "may not contain VIRTUAL_ENV: taskmill's own virtualenv is never "
                "handed to checks (to use the project's, set VIRTUAL_ENV and PATH in "
                "[checks] env)", {})
        return value


class RunTable(_Table):
    """``[run]``: every field of :class:`taskmill.mill.settings.RunSettings` (a test keeps the
    two in step). ``None`` means "not given": RunSettings' default applies."""

    target: NonEmpty | None = None
    workers: PositiveInt | None = None
    max_iterations: PositiveInt | None = None
    turn_timeout: Seconds | None = None
    check_timeout: Seconds | None = None
    max_tokens: PositiveInt | None = None
    max_cost: Annotated[float, Field(ge=0)] | None = None
    no_change_limit: PositiveInt | None = None
    same_failure_limit: PositiveInt | None = None
    agent: NonEmpty | None = None
    rate_limit_backoff: Annotated[float, Field(ge=0)] | None = None
    clean_ignored: bool | None = None
    only: list[NonEmpty] | None = None
    max_tasks: PositiveInt | None = None
    allow_unchecked: bool | None = None
    grace: Annotated[float, Field(ge=0)] | None = None
    contain: Literal["auto", "pidns", "group"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _underscores(cls, data: Any) -> Any:
        """``max-iterations`` is accepted for ``max_iterations``."""
        if isinstance(data, dict):
            return {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
        return data


class MergeTable(_Table):
    """``[merge]``: every field of :class:`taskmill.mill.batch.MergeSettings` (a test keeps
    the two in step). ``None`` means "not given": MergeSettings' default applies."""

    batch_max: PositiveInt | None = None
    """Branches landed together at most (checked once, bisected when red)."""
    batch_wait: Annotated[float, Field(ge=0)] | None = None
    """Seconds to wait for a batch to fill when fewer branches wait to land."""
    flaky_retries: Annotated[int, Field(ge=0)] | None = None
    """Times a red batch is checked again before it is bisected."""
    speculate: Literal["auto"] | bool | None = None
    """Check the branches waiting behind a batch on top of it, in parallel ("auto": on
    with more than 2 cores)."""
    require_approval: bool | None = None
    """Tasks wait for a person's approval (`taskmill approve`) before they land."""
    approval_labels: list[NonEmpty] | None = None
    """Tasks with any of these labels wait for approval (with require_approval off)."""

    @model_validator(mode="before")
    @classmethod
    def _underscores(cls, data: Any) -> Any:
        """``batch-max`` is accepted for ``batch_max``."""
        if isinstance(data, dict):
            return {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
        return data


_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9*](?:[A-Za-z0-9.*-]*[A-Za-z0-9])?)"
                        r":[0-9]{1,5}$")


def _sandbox_path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("taskmill", "must be a non-empty path, got {value}",
                                  {"value": repr(value)})
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        raise PydanticCustomError(
            "taskmill", "must be an absolute path (or start with ~/ for your HOME), got {value}",
            {"value": repr(value)})
    return value


def _host_port(value: object) -> str:
    if not isinstance(value, str) or not _HOST_PORT.match(value) \
            or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise PydanticCustomError(
            "taskmill", "must be host:port (e.g. \"pypi.org:443\"), got {value}",
            {"value": repr(value)})
    return value


SandboxPath = Annotated[str, PlainValidator(_sandbox_path)]
HostPort = Annotated[str, PlainValidator(_host_port)]


class SandboxTable(_Table):
    """``[sandbox]``: see :mod:`taskmill.sandbox`."""

    enabled: Literal["auto"] | bool = "auto"
    read_only: list[SandboxPath] = []
    writable: list[SandboxPath] = []
    network: list[HostPort] = []
    memory_mb: PositiveInt | None = None
    max_processes: PositiveInt | None = None
    toolchains: bool = True

    @model_validator(mode="before")
    @classmethod
    def _underscores(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
        return data


NonNegative = Annotated[float, Field(ge=0)]


class PriceEntry(_Table):
    """``[pricing."MODEL"]``: USD per million tokens (cache prices default to ``input``)."""

    input: NonNegative
    output: NonNegative
    cache_read: NonNegative | None = None
    cache_write: NonNegative | None = None


class LedgerTable(_Table):
    """``[ledger]``: where the ledger lives, and how ``ready`` and ``blocked`` read it."""

    beads_compat: bool = False
    """Follow Beads where taskmill deliberately differs: a ``blocked``/``deferred`` parent
    does not hold back its children, and ``blocked`` lists only tasks a dependency holds
    (see :meth:`taskmill.ledger.Ledger.ready`)."""
    url: str | None = None
    """Where the ledger lives when it is not the repository's SQLite file: a PostgreSQL
    URL (``postgresql://user@host/db``, libpq's form, TLS options included) that every
    clone and worker shares (``TASKMILL_DATABASE_URL`` overrides it)."""

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL (postgresql://user@host:port/database)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _underscores(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
        return data


class BlockAtTable(_Table):
    """``[review] block_at``: findings at or above both send the task back to its agent."""

    severity: Literal["blocker", "major", "minor", "nit"] = "major"
    confidence: Annotated[float, Field(ge=0, le=1)] = 0.5


class ReviewTable(_Table):
    """``[review]``: the review step between a task's checks and the merge queue
    (:mod:`taskmill.review`). Present: on, unless ``enabled = false``."""

    enabled: bool = True
    agent: NonEmpty = "reviewer"
    """The reviewer: a key of [agents] (any adapter)."""
    block_at: BlockAtTable = BlockAtTable()
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Findings under this confidence are recorded but not shown (the hit-rate tuning
    moves it when target_hit_rate is set)."""
    on_failure: Literal["proceed", "wait"] = "proceed"
    """A review that failed (no valid answer after a retry): land anyway (saying so) or
    wait (the task is blocked with the reason)."""
    target_hit_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    window_days: Annotated[float, Field(gt=0)] = 30.0
    """The window of `taskmill review stats` and of the dashboard's hit rate."""
    timeout: Seconds | None = None
    """Wall-clock seconds per reviewer turn (default: [run] turn_timeout)."""
class ExecutorTable(_Table):
    """``[executor]``: where the mill's task workflows run (``taskmill run --executor``)."""

    kind: Literal["threads", "temporal"] = "threads"
    """``threads`` (this process, the default) or ``temporal`` (``taskmill worker``s)."""
    address: NonEmpty | None = None
    """The Temporal frontend, ``HOST:PORT`` (``--temporal``)."""
    namespace: NonEmpty = "default"
    task_queue: NonEmpty = "taskmill"
    """The shared task queue (the client and its workers must agree: commit it)."""
    heartbeat_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds without a heartbeat after which a worker is taken for dead."""

    @model_validator(mode="before")
    @classmethod
    def _underscores(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k.replace("-", "_") if isinstance(k, str) else k: v for k, v in data.items()}
        return data


class ConfigFile(_Table):
    prefix: NonEmpty
    checks: ChecksTable = ChecksTable()
    run: RunTable = RunTable()
    sandbox: SandboxTable = SandboxTable()
    merge: MergeTable = MergeTable()
    ledger: LedgerTable = LedgerTable()
    review: ReviewTable = ReviewTable()
    executor: ExecutorTable = ExecutorTable()


    pricing: dict[str, PriceEntry] = {}
    """Model prices for the cost the model proxy counts (:mod:`taskmill.proxy.pricing`)."""
    agents: dict[str, Any] = {}
    """Checked table by table by :func:`agent_table` (the model depends on the adapter)."""

    @field_validator("checks", mode="before")
    @classmethod
    def _checks_list(cls, value: Any) -> Any:
        """``checks = ["cmd", ...]`` is short for ``[checks] commands = [...]``."""
        return {"commands": value} if isinstance(value, list) else value


# -- [agents.NAME] --------------------------------------------------------------------------


class AgentTable(_Table):
    """The keys every adapter takes."""

    adapter: NonEmpty | None = None
    model: NonEmpty | None = None
    args: CommandLine = ()
    env: dict[str, EnvValue] = {}
    pass_env: list[NonEmpty] = []
    base_url: NonEmpty | None = None
    api_key_env: NonEmpty | None = None
    command: CommandLine = ()
    mcp: bool = False
    proxy: bool | None = None
    """Through taskmill's model proxy (default: yes when base_url is set)."""
    proxy_api: Literal["anthropic", "openai", "gemini"] | None = None
    """The API family the proxy authenticates for (default: the adapter's)."""

    @model_validator(mode="after")
    def _proxy_needs_base_url(self) -> AgentTable:
        if self.proxy and not self.base_url:
            raise PydanticCustomError(
                "taskmill", "proxy = true needs base_url (the upstream the model proxy "
                "forwards to), e.g. base_url = \"https://api.anthropic.com\"")
        return self

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise PydanticCustomError("taskmill", "must be an http(s) URL, got {value}",
                                      {"value": repr(value)})
        return value




class _McpTable(AgentTable):
    mcp_command: StrOrList | None = None
    """The command that starts taskmill's MCP server for the agent."""


class ExecTable(AgentTable):
    @model_validator(mode="after")
    def _needs_command(self) -> ExecTable:
        if not self.command:
            raise PydanticCustomError(
                "taskmill", 'uses adapter "exec" and needs command = ["prog", "arg", ...]')
        return self


class ClaudeTable(_McpTable):
    permission_mode: NonEmpty | None = None
    allowed_tools: StrOrList | None = None
    max_turns: PositiveInt | None = None


class CodexTable(_McpTable):
    codex_config: dict[str, Any] | None = None
    codex_provider: dict[str, Any] | None = None
    sandbox: NonEmpty | None = None


class OpencodeTable(_McpTable):
    model_cost: dict[str, float] | None = None
    """USD per million tokens, e.g. ``{input = 3.0, output = 15.0}``."""
    provider_npm: NonEmpty | None = None


class ScriptedTable(AgentTable):
    script: NonEmpty | None = None
    python: NonEmpty | None = None


class ThirdPartyTable(AgentTable):
    """An installed adapter: the common keys are checked, the others go to ``options``."""

    model_config = ConfigDict(extra="allow")


ADAPTER_TABLES: dict[str, type[AgentTable]] = {
    "exec": ExecTable,
    "claude": ClaudeTable,
    "codex": CodexTable,
    "gemini": _McpTable,
    "opencode": OpencodeTable,
    "qwen": AgentTable,
    "aider": AgentTable,
    "scripted": ScriptedTable,
}
"""The built-in adapters and the table each takes (a test keeps it in step with the registry)."""


class AgentTableError(ConfigError, ValueError):
    """``problems``: one line each, naming ``[agents.NAME]`` and the key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _third_party_names() -> list[str]:
    from .agents.registry import third_party_names

    return [name for name in third_party_names() if name not in ADAPTER_TABLES]


def agent_table(name: str, table: object) -> AgentConfig:
    """Check one ``[agents.NAME]`` table and make it an :class:`AgentConfig`.

    ``adapter`` defaults to ``NAME`` when that is a built-in adapter. Raises
    :class:`AgentTableError`."""
    where = f"[agents.{name}]"
    if not isinstance(table, Mapping):
        raise AgentTableError([f"{where} must be a table, got {table!r}"])
    adapter = table.get("adapter", name if name in ADAPTER_TABLES else None)
    if adapter is None:
        raise AgentTableError([
            f"{where} needs adapter = one of {', '.join(ADAPTER_TABLES)} (or an installed "
            f"third-party adapter)"])
    if not isinstance(adapter, str) or not adapter:
        raise AgentTableError([f"{where} adapter must be a non-empty string, got {adapter!r}"])
    model = ADAPTER_TABLES.get(adapter)
    if model is None:
        from .agents.registry import WHERE_FROM

        installed = _third_party_names()
        if adapter not in installed:
            known = [*ADAPTER_TABLES, *installed]
            raise AgentTableError([
                f"{where} adapter {adapter!r} is not a known adapter{did_you_mean(adapter, known)}"
                f"; known adapters: {', '.join(known)} ({WHERE_FROM})"])
        model = ThirdPartyTable
    try:
        model.model_validate(dict(table))
    except ValidationError as exc:
        raise AgentTableError(
            [describe(err, prefix=("agents", name), model=model, adapter=adapter)
             for err in exc.errors()]) from None
    return agent_config(name, {"adapter": adapter, **table})


# -- the whole file -------------------------------------------------------------------------


TOP_LEVEL = {"prefix": "prefix", "checks": "[checks]", "run": "[run]", "sandbox": "[sandbox]",
             "agents": "[agents.NAME]", "pricing": "[pricing]", "merge": "[merge]",
             "ledger": "[ledger]"}


def check_config(raw: Mapping[str, Any]) -> list[str]:
    """The problems of a parsed config file, one line each naming the table and the key
    (empty when the file is fine)."""
    problems: list[str] = []
    try:
        ConfigFile.model_validate(dict(raw))
    except ValidationError as exc:
        problems += [describe(err, model=ConfigFile) for err in exc.errors()]
    tables = raw.get("agents", {})
    if isinstance(tables, Mapping):
        for name, table in tables.items():
            try:
                agent_table(name, table)
            except AgentTableError as exc:
                problems += exc.problems
    run = raw.get("run")
    default = run.get("agent") if isinstance(run, Mapping) else None
    if (isinstance(default, str) and default and isinstance(tables, Mapping)
            and default not in tables and default not in BUILTIN_AGENTS):
        names = [*tables, *(n for n in BUILTIN_AGENTS if n not in tables)]
        problems.append(f"[run] agent {default!r} is neither an [agents.NAME] table nor a "
                        f"built-in agent{did_you_mean(default, names)}; "
                        f"agents: {', '.join(names)}")
    return problems


# -- messages -------------------------------------------------------------------------------


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_PHRASES = {
    "string_type": "must be a string",
    "string_too_short": "must be a non-empty string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "missing": "is required",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
}


def _where(loc: Sequence[int | str]) -> tuple[str, str]:
    """``("run", "workers")`` -> (``"[run]"``, ``"workers"``); list indexes as ``[i]``."""
    if not loc:
        return "", ""
    head, *rest = loc
    if head == "agents" and rest:
        table, rest = f"[agents.{rest[0]}]", rest[1:]
    elif head in ("checks", "run", "sandbox", "agents", "pricing", "merge", "ledger"):
        table = f"[{head}]"
    else:
        table, rest = "", list(loc)
    key = ""
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return table, key


def _fields_of(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The valid keys of the table at ``loc`` (a path of field names below ``model``)."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def describe(err: ErrorDetails, *, prefix: tuple[str, ...] = (),
             model: type[BaseModel] = ConfigFile, adapter: str | None = None) -> str:
    """One pydantic error as one line: where (table and key), what is wrong, what is valid."""
    loc = tuple(err["loc"])
    table, key = _where((*prefix, *loc))
    subject = " ".join(p for p in (table, key) if p)
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, name = loc[:-1], str(loc[-1])
        valid = _fields_of(model, parent)
        if not prefix and not parent:  # a top-level table or key
            shown = f"[{name}]" if isinstance(value, dict) else name
            close = difflib.get_close_matches(name, list(TOP_LEVEL), n=1, cutoff=0.6)
            hint = f" (did you mean {TOP_LEVEL[close[0]]}?)" if close else ""
            return (f"{shown} is not a known table or key{hint}; the config has "
                    f"{', '.join(TOP_LEVEL.values())}")
        owner = " ".join(p for p in _where((*prefix, *parent)) if p)
        for_adapter = f" for adapter {adapter!r}" if adapter else ""
        hint = did_you_mean(name, valid)
        others = [a for a, m in ADAPTER_TABLES.items() if name in m.model_fields]
        if not hint and others:
            hint = f" (an option of adapter {' and '.join(others)})"
        return (f"{owner} has an unknown key {name!r}{for_adapter}{hint}; "
                f"valid keys: {', '.join(valid)}")
    if kind == "taskmill" or kind not in _PHRASES:
        message = err["msg"]
        if kind == "value_error" and message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif kind not in ("taskmill",):
            message = f"is invalid: {message[:1].lower()}{message[1:]}"
        return f"{subject} {message}" if subject else message
    phrase = _PHRASES[kind].format(**(err.get("ctx") or {}))
    got = "" if kind == "missing" else f", got {value!r}"
    return f"{subject} {phrase}{got}"

