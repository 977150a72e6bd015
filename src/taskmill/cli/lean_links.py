"""``blocked``'s links begun first (:mod:`taskmill.ledger.links_begun`): what the CLI does before
it imports anything else, for ``blocked`` and ``blocked --json`` as they are, of a big
ledger.

It looks as the lean path looks (:mod:`taskmill.cli.lean`): none of the environment that
sends a command to the full path, a ledger found with its config checked, Beads-compatible
readiness off, the schema this code's; then, unless what the last same listing printed is
kept for the ledger as it is now (then no link is read), a child is forked to read the
links while this process imports the rest. Any doubt or error: nothing begun, the full path
reads the links as before.
"""

from __future__ import annotations

import os

from . import lean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO

FORMS = (["blocked"], ["blocked", "--json"])
"""The command lines whose links are begun."""


def begin(argv: list[str], env: Mapping[str, str], cwd: str | None) -> bool:
    """Begin reading the links of ``taskmill ARGV`` where it is worth it; whether it was."""
    if argv not in FORMS or env.get(lean.SWITCH_ENV) == "0" or \
            any(env.get(name) for name in lean.FULL_PATH_ENV) or not hasattr(os, "fork"):
        return False
    try:
        return _begin(env, cwd)
    except Exception:  # (the full path reads them, and says what is wrong)
        return False


def _begin(env: Mapping[str, str], cwd: str | None) -> bool:
    begun = lean.load_ledger_module("links_begun")  # (on its own: no package imported)
    found = lean.find_ledger(os.getcwd() if cwd is None else cwd)
    if found is None or found[1].get("beads_compat") != "0":
        return False
    db = found[0]
    sql = lean.sql_module()
    watch = sql.connect(db)  # (None: a schema the store migrates first)
    if watch is None:
        return False
    try:
        before, tasks = begun.looked(watch)
        run_dir = os.path.join(os.path.dirname(db), "run")
        if tasks >= begun.FORK_MIN and not _kept(sql.generation(watch), run_dir, env) and \
                begun.begin(db, watch, before, run_dir, _read):
            return True
    except BaseException:
        watch.close()
        raise
    watch.close()
    return False


def _kept(generation: int, run_dir: str, env: Mapping[str, str]) -> bool:
    """Whether a ``blocked`` listing was kept at the ledger's ``generation`` (the answer
    likely comes from it: :mod:`taskmill.cli.kept_output`)."""
    from . import lean_kept

    if not lean_kept.enabled(env):
        return False
    try:
        names = [n for n in os.listdir(run_dir)
                 if n.startswith("blocked-") and n.endswith(lean_kept.SUFFIX)]
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(run_dir, name), "rb") as handle:
                fields = handle.readline(lean_kept.HEADER_MAX).split(b" ", 6)
        except OSError:
            continue
        if len(fields) == 7 and fields[4] == str(generation).encode():
            return True
    return False


def _read(db: str, out: BinaryIO) -> None:  # pragma: no cover - in the forked child
    """The child's reading (:func:`taskmill.ledger.held_links.read_begun`, marshalled into
    ``out``), the ledger's modules loaded on their own (no package imported: the child
    begins at once)."""
    import marshal

    begun = lean.load_ledger_module("links_begun")
    held = lean.load_ledger_module("held_links")
    holds = lean.load_ledger_module("lean_readiness").HOLDS_SQL
    conn = lean.sql_module().connect(db)  # (its schema looked at: this code's)
    marshal.dump(held.read_begun(conn, begun.SHARE, holds, begun.CACHE_KIB), out)
