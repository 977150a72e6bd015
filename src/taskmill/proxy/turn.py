"""The mill's side of the proxy: route one agent turn through it, and read what it counted.

:func:`through_proxy` is called for every turn. When the agent's table sends it through the
proxy (``base_url`` set and ``proxy`` not false) it registers the turn and returns the
config and request the adapter sees: ``base_url`` is the turn's proxy URL, the variable
named by ``api_key_env`` holds :data:`~.server.PLACEHOLDER_KEY` (CLIs insist on a key), the
real key is removed from ``parent_env`` and ``pass_env``, and ``proxy_port`` /
``proxy_socket`` are set for the sandbox. The adapter is wrapped so that a turn whose
environment or command line would still contain the real key is refused before it starts.

:func:`proxy_usage` makes the proxy's figures the attempt's (source ``proxy``): tokens and
cost come from what the model answered, the agent's own figures are kept in the attempt
detail as ``agent_reported``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig, Invocation, TurnRequest, Usage
from ..agents.common import AgentConfigError
from ..agents.envs import api_key
from .families import family_for
from .pricing import PriceTable
from .server import PLACEHOLDER_KEY, ModelProxy, TurnRoute
from .usage import TurnUsage


def uses_proxy(config: AgentConfig) -> bool:
    """Whether turns of this agent go through the model proxy."""
    return bool(config.base_url) and config.proxy is not False


@dataclass
class ProxiedTurn:
    config: AgentConfig
    request: TurnRequest
    adapter: AgentAdapter
    route: TurnRoute | None


class KeyGuard:
    """An adapter that refuses an invocation carrying the real key (in a variable the table
    set with ``env``, say), and one whose key could not be found."""

    def __init__(self, inner: AgentAdapter, key: str | None,
                 problem: AgentConfigError | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.key = key
        self.problem = problem
        self.install_hint = getattr(inner, "install_hint", "")

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        if self.problem is not None:
            raise self.problem
        invocation = self.inner.prepare(config, request)
        if self.key:
            leaks = [name for name, value in invocation.env.items() if self.key in value]
            if any(self.key in arg for arg in invocation.argv):
                leaks.append("its command line")
            if leaks:
                raise AgentConfigError(
                    f"agent {config.name!r}: the model key would reach the agent through "
                    f"{', '.join(leaks)}; it goes through taskmill's model proxy, which adds "
                    "it on the way out: remove it from the table's env/pass_env/args")
        return invocation

    def parse(self, config: AgentConfig, request: TurnRequest, output: str,
              exit_code: int | None) -> Usage:
        return self.inner.parse(config, request, output, exit_code)


def through_proxy(proxy: ModelProxy | None, config: AgentConfig, adapter: AgentAdapter,
                  request: TurnRequest) -> ProxiedTurn:
    """The turn as the adapter should see it (unchanged when it does not use the proxy)."""
    if proxy is None or not uses_proxy(config):
        return ProxiedTurn(config, request, adapter, None)
    assert config.base_url is not None
    try:
        key = api_key(config, request)
    except AgentConfigError as exc:  # the turn fails with the message, as without a proxy
        return ProxiedTurn(config, request, KeyGuard(adapter, None, exc), None)
    route = proxy.register(agent=config.name, upstream=config.base_url, key=key,
                           family=family_for(config.adapter, config.proxy_api))
    name = config.api_key_env
    env = dict(config.env)
    if name:
        env[name] = PLACEHOLDER_KEY
    turn_config = replace(config, base_url=route.base_url, env=env,
                          pass_env=tuple(n for n in config.pass_env if n != name))
    parent_env = {k: v for k, v in request.parent_env.items()
                  if k != name and not (key and v == key)}
    turn_request = replace(request, parent_env=parent_env, proxy_port=proxy.port,
                           proxy_socket=proxy.socket_path)
    return ProxiedTurn(turn_config, turn_request, KeyGuard(adapter, key), route)


def proxy_usage(usage: Usage, counted: TurnUsage, prices: PriceTable) -> dict[str, Any]:
    """Replace the agent's figures in ``usage`` by the proxy's; the attempt detail to add."""
    reported: dict[str, Any] = {
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens, "cost_usd": usage.cost_usd}
    if usage.invalid:
        reported["invalid"] = list(usage.invalid)
    totals = counted.totals()
    cost, _ = counted.cost(prices)
    usage.input_tokens = totals.input_tokens
    usage.output_tokens = totals.output_tokens
    usage.cache_read_tokens = totals.cache_read_tokens
    usage.cache_write_tokens = totals.cache_write_tokens
    usage.cost_usd = cost
    usage.invalid = []  # what the agent claimed no longer counts for anything
    usage.model = counted.main_model() or usage.model
    return {"usage_source": "proxy", "agent_reported": reported,
            "proxy": counted.to_json(prices)}
