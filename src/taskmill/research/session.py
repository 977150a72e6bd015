"""Opening a research from a project: the config files, the pool, the agent, the env.

The CLI and the web API call :func:`open_research`; tests pass their own clock and turn
runner (e.g. :class:`taskmill.testing.turns.ScriptedTurns`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from ..agents.registry import UnknownAdapterError, get_adapter
from ..clock import Clock, SystemClock
from ..containment import containment
from ..errors import ConfigError, InvalidInput
from ..mill.check_env import check_env
from ..mill.git import Git, ensure_identity, git_env, identity_env
from ..mill.turn_runner import TurnRunner, default_turn_runner
from ..mill.worktrees import WorktreePool
from ..paths import git_common_dir
from ..project import Project
from .config import CONFIG_FILE, INIT_PROGRAM, INIT_TOML, ResearchConfig, load_research_config
from .loop import Emit, Research, ResearchSetup
from .records import research_key


def config_path(project: Project, given: Path | None = None) -> Path:
    return given if given is not None else project.paths.root / CONFIG_FILE


def init_files(root: Path, *, metric: str | None = None, force: bool = False) -> list[Path]:
    """Write ``research.toml`` (commented) and ``program.md`` in ``root``; an existing file
    is left alone (refused, unless ``force``). Returns the files written."""
    import json

    toml, program = root / CONFIG_FILE, root / "program.md"
    existing = [p for p in (toml, program) if p.exists()]
    if existing and not force:
        raise InvalidInput(f"{', '.join(str(p) for p in existing)} already exist(s): nothing "
                           "was written", hint="edit it, or pass --force to overwrite")
    toml.write_text(INIT_TOML.format(metric=json.dumps(metric or "python bench.py")),
                    encoding="utf-8")
    program.write_text(INIT_PROGRAM, encoding="utf-8")
    return [toml, program]


def load(project: Project, path: Path | None = None) -> tuple[ResearchConfig, str]:
    """The research config and the program text."""
    config = load_research_config(config_path(project, path))
    program_path = (config_path(project, path).parent / config.program)
    if not program_path.is_file():
        raise ConfigError(f"program = {config.program!r}: {program_path} does not exist",
                          hint="`taskmill research init` writes one")
    return config, program_path.read_text(encoding="utf-8")


def open_research(project: Project, env: Mapping[str, str], *, path: Path | None = None,
                  clock: Clock | None = None, turn_runner: TurnRunner | None = None,
                  emit: Emit | None = None, need_agent: bool = True,
                  workers: int | None = None) -> Research:
    config, program = load(project, path)
    if workers is not None:
        config = config.model_copy(update={"workers": workers})
    clock = clock or SystemClock()
    base_env = git_env(env)
    git = Git(project.paths.root, base_env)
    git = Git(project.paths.root, {**base_env, **ensure_identity(git)})
    agent = None
    if need_agent:
        if config.agent is None:
            raise ConfigError("research.toml names no agent",
                              hint='add agent = "NAME" (an [agents.NAME] table of '
                                   ".taskmill/config.toml, or a built-in agent)")
        agent_config = project.config.agent(config.agent)
        if agent_config is None:
            raise ConfigError(f"research.toml: agent: {project.config.agent_problem(config.agent)}")
        try:
            agent = (agent_config, get_adapter(agent_config.adapter))
        except UnknownAdapterError as exc:
            raise ConfigError(f"research.toml: agent {config.agent!r}: {exc}") from None
    key = research_key(config.branch)
    state = project.paths.run_dir / "research" / key
    state.mkdir(parents=True, exist_ok=True)
    pool = WorktreePool(git, git_common_dir(project.paths.root) / "taskmill" / "research"
                        / key, repo_root=project.paths.root, include_file=project.paths.include,
                        clock=clock)
    setup = ResearchSetup(
        root=project.paths.root, git=git, ledger=project.ledger, config=config,
        program=program, pool=pool, clock=clock, env=env,
        check_env=check_env(env, env=project.config.check_env,
                            pass_env=project.config.check_pass_env),
        state_dir=state, run_id=secrets.token_hex(4), agent=agent,
        turn_runner=turn_runner or (default_turn_runner() if need_agent else None),
        agent_git_env=identity_env(Git(project.paths.root, git_env(env))),
        # as the mill's checks and turns: a PID namespace where it works ([run] contain)
        containment=containment(str(project.config.run.get("contain", "auto")), env),
        turn_timeout=float(project.config.run.get("turn_timeout", 1800.0)),
        emit=emit or (lambda _kind, _data: None))
    return Research(setup)
