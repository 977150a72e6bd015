"""Opening a repository's ledger from a working directory: ``init`` and ``open_ledger``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .clock import Clock, SystemClock
from .config import DEFAULT_CONFIG, Config, load_config, set_ledger_url
from .errors import InvalidInput
from .ids import PREFIX_RE, default_prefix
from .lean_rules import actor_from_env as actor_from_env
from .ledger import Ledger, check_database_url, database_url, open_store
from .paths import LedgerPaths, find_repository, locate

IGNORE_RULES = """\
# taskmill: the ledger database and run state stay out of git; config.toml is committed.
taskmill.db
taskmill.db-*
logs/
worktrees/
run/
"""


@dataclass
class Project:
    paths: LedgerPaths
    config: Config
    ledger: Ledger

    def close(self) -> None:
        self.ledger.close_db()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init(cwd: Path, env: Mapping[str, str], *, prefix: str | None = None,
         clock: Clock | None = None, database: str | None = None) -> Project:
    """Create ``.taskmill/`` (config, ignore rules, database). Running it again is harmless.

    ``database``: a PostgreSQL URL to keep the ledger in (written as ``[ledger] url``, once
    the database answered and holds the schema)."""
    paths = find_repository(cwd)
    if prefix is not None and not PREFIX_RE.match(prefix):
        raise InvalidInput(f"prefix {prefix!r} must be lower-case letters, digits, '_' or '-',"
                           " starting with a letter")
    if database is not None:
        check_database_url(database)
        open_store(paths.db, database).close()  # it answers, and has the schema
    paths.dir.mkdir(exist_ok=True)
    ignore = paths.dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text(IGNORE_RULES, encoding="utf-8")
    if not paths.config.exists():
        chosen = prefix or default_prefix(paths.root.name)
        tmp = paths.config.with_suffix(".tmp")
        tmp.write_text(DEFAULT_CONFIG.format(prefix=chosen), encoding="utf-8")
        tmp.replace(paths.config)
    if database is not None and load_config(paths.config).ledger_url != database:
        set_ledger_url(paths.config, database)
    config = load_config(paths.config, stamp=paths.run.config_stamp)
    ledger = Ledger.open(paths.db, prefix=config.prefix, clock=clock or SystemClock(),
                         actor=actor_from_env(env), url=database_url(config.ledger_url, env))
    ledger.beads_compat = config.beads_compat
    return Project(paths, config, ledger)


def open_project(cwd: Path, env: Mapping[str, str], *, clock: Clock | None = None,
                 notice: Callable[[str], None] | None = None) -> Project:
    """The ledger of the repository containing ``cwd`` (or of ``$TASKMILL_DIR``);
    ``notice``: told before a long upgrade of the ledger's schema."""
    paths = locate(cwd, env)
    config = load_config(paths.config, stamp=paths.run.config_stamp)
    url = database_url(config.ledger_url, env)
    if url is None and not paths.db.exists():
        # a fresh clone: say so when a synced ledger can be loaded
        from .sync import refuse_empty_clone

        refuse_empty_clone(paths, env)
    ledger = Ledger.open(paths.db, prefix=config.prefix, clock=clock or SystemClock(),
                         actor=actor_from_env(env), url=url, notice=notice)
    ledger.beads_compat = config.beads_compat
    if config.ledger_url is None and config.source is not None:
        # what the CLI's lean path needs to answer ``ready``/``show`` without this module
        from . import lean_config

        lean_config.write(str(paths.run_dir), config.source,
                          beads_compat=config.beads_compat, prefix=config.prefix)
    return Project(paths, config, ledger)
