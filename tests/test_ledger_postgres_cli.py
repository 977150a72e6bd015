"""Choosing the PostgreSQL ledger: ``taskmill init --database URL``, ``[ledger] url``,
``TASKMILL_DATABASE_URL``, and ``taskmill ledger migrate --to URL`` (a SQLite ledger moved,
the audit chain intact), on a real server the tests start (``pg_helpers``)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg_helpers
from conftest import CliResult
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger, OrderSlot

Cli = Callable[..., CliResult]


def _pg_ledger(url: str) -> Ledger:
    return Ledger(pg_helpers.open_store(url), prefix="tm", clock=FixedClock(), actor="check")


def _config(repo: Path) -> dict[str, Any]:
    return tomllib.loads((repo / ".taskmill" / "config.toml").read_text(encoding="utf-8"))


def test_init_database_writes_the_url_and_every_command_uses_it(git_repo: Path,
                                                                cli: Cli) -> None:
    url = pg_helpers.new_database()
    out = cli("init", "--prefix", "tm", "--database", url, "--json", cwd=git_repo).ok()
    assert json.loads(out.stdout)["database"] == url
    config = _config(git_repo)
    assert config["ledger"]["url"] == url and config["prefix"] == "tm"
    assert "# taskmill settings" in (git_repo / ".taskmill" / "config.toml").read_text()
    made = json.loads(cli("create", "On the server", "--json", cwd=git_repo).ok().stdout)
    assert not (git_repo / ".taskmill" / "taskmill.db").exists()
    with _pg_ledger(url) as ledger:
        assert [t.id for t in ledger.list_tasks()] == [made["id"]]
    ready = json.loads(cli("ready", "--json", cwd=git_repo).ok().stdout)
    assert [t["id"] for t in ready] == [made["id"]]
    # again: harmless, the same URL kept
    cli("init", "--database", url, cwd=git_repo).ok()
    assert _config(git_repo)["ledger"]["url"] == url


def test_init_does_not_print_a_password(git_repo: Path, cli: Cli) -> None:
    url = pg_helpers.new_database().replace("taskmill@", "taskmill:s3cret@")  # trust: any
    out = cli("init", "--prefix", "tm", "--database", url, "--json", cwd=git_repo).ok()
    assert "s3cret" not in out.stdout + out.stderr
    assert json.loads(out.stdout)["database"] == url.replace("s3cret", "***")
    text = cli("init", cwd=git_repo).ok().stdout
    assert "s3cret" not in text and "in PostgreSQL at" in text


def test_the_environment_overrides_the_config(git_repo: Path, cli: Cli) -> None:
    configured, other = pg_helpers.new_database(), pg_helpers.new_database()
    cli("init", "--prefix", "tm", "--database", configured, cwd=git_repo).ok()
    cli("create", "Elsewhere", cwd=git_repo, env={"TASKMILL_DATABASE_URL": other}).ok()
    with _pg_ledger(other) as ledger:
        assert [t.title for t in ledger.list_tasks()] == ["Elsewhere"]
    with _pg_ledger(configured) as ledger:
        assert ledger.list_tasks() == []


def test_a_bad_database_url_changes_nothing(git_repo: Path, cli: Cli) -> None:
    pg_helpers.database_url()  # (skips without psycopg: the error would say so instead)
    cli("init", "--prefix", "tm", cwd=git_repo).ok()
    before = (git_repo / ".taskmill" / "config.toml").read_text()
    bad = cli("init", "--database", "mysql://db/x", cwd=git_repo)
    assert bad.exit_code != 0 and "not a PostgreSQL URL" in bad.stderr
    gone = cli("init", "--database", "postgresql://taskmill@127.0.0.1:1/none", cwd=git_repo)
    assert gone.exit_code != 0 and "cannot connect to the ledger database" in gone.stderr
    assert (git_repo / ".taskmill" / "config.toml").read_text() == before
    (git_repo / ".taskmill" / "config.toml").write_text(
        before + '\n[ledger]\nurl = "sqlite:///x.db"\n')
    refused = cli("list", cwd=git_repo)
    assert refused.exit_code != 0 and "[ledger]" in refused.stderr and "url" in refused.stderr


def test_migrate_moves_the_sqlite_ledger_with_its_chain(git_repo: Path, cli: Cli) -> None:
    cli("init", "--prefix", "tm", cwd=git_repo).ok()
    db = git_repo / ".taskmill" / "taskmill.db"
    with Ledger.open(db, prefix="tm", clock=FixedClock(step=1.0), actor="ana") as ledger:
        epic = ledger.create("Epic", issue_type="epic")
        a = ledger.create("A", labels=["x", "y"], checks=["true"], hints={"estimate": 2})
        b = ledger.create("B", priority=1)
        ledger.add_dep(a.id, epic.id, "parent-child")
        ledger.add_dep(b.id, a.id)
        ledger.comment(a.id, "first")
        ledger.claim(a.id, "mill:r1")
        attempt = ledger.start_attempt(a.id, iteration=1, agent="exec", model=None,
                                       log_path="l", run_id="r1", lap=1, actor="mill:r1",
                                       now=ledger.now())
        ledger.finish_attempt(a.id, attempt, outcome="passed", input_tokens=3,
                              output_tokens=4, cost_usd=0.5, commit="abc", model="m",
                              detail={"k": 1}, seconds=1.0, usage_error=None,
                              actor="mill:r1", now=ledger.now())
        ledger.close(a.id, "done")
        ledger.update(b.id, {"role": "writer"})
        ledger.start_attempt(b.id, iteration=1, agent="exec", model=None, log_path="l",
                             run_id="r1", lap=1, actor="mill:r1", now=ledger.now(),
                             role="writer")
        slot = OrderSlot("nightly", "2026-01-01T03:00:00Z", "fired", b.id, "", ledger.now())
        with ledger.transaction():
            ledger.store.record_order_slot(slot)
        before = {
            "tasks": [t.to_json() for t in ledger.list_tasks(include_hidden=True)],
            "ready": [t.id for t in ledger.ready()],
            "head": ledger.store.audit_head(),
            "events": [e.hash for e in ledger.events()],
            "attempts": [*ledger.store.attempts(a.id), *ledger.store.attempts(b.id)],
            "comments": [c.text for c in ledger.store.comments(a.id)],
        }
    url = pg_helpers.new_database()
    out = json.loads(cli("ledger", "migrate", "--to", url, "--json", cwd=git_repo).ok().stdout)
    assert (out["tasks"], out["events"], out["verified"]) == (3, len(before["events"]), True)
    assert _config(git_repo)["ledger"]["url"] == url
    verify = json.loads(cli("verify", "--json", cwd=git_repo).ok().stdout)
    assert verify["ok"] and verify["events"] == len(before["events"])
    with _pg_ledger(url) as moved:
        assert [t.to_json() for t in moved.list_tasks(include_hidden=True)] == before["tasks"]
        assert [t.id for t in moved.ready()] == before["ready"]
        assert moved.store.audit_head() == before["head"]
        assert [e.hash for e in moved.events()] == before["events"]
        assert [*moved.store.attempts(a.id), *moved.store.attempts(b.id)] == before["attempts"]
        assert moved.get(b.id).role == "writer"
        assert moved.store.order_slots("nightly") == [slot]
        assert [c.text for c in moved.store.comments(a.id)] == before["comments"]
        moved.comment(b.id, "after the move")  # the chain goes on from the moved head
        assert moved.verify().ok
    again = cli("ledger", "migrate", "--to", url, cwd=git_repo)
    assert again.exit_code != 0 and "already" in again.stderr


def test_migrate_refuses_a_target_that_holds_a_ledger(git_repo: Path, cli: Cli) -> None:
    cli("init", "--prefix", "tm", cwd=git_repo).ok()
    cli("create", "Local", cwd=git_repo).ok()
    url = pg_helpers.new_database()
    with _pg_ledger(url) as other:
        other.create("Someone else's")
    refused = cli("ledger", "migrate", "--to", url, cwd=git_repo)
    assert refused.exit_code != 0 and "not empty" in refused.stderr
    assert "ledger" not in _config(git_repo)
    with _pg_ledger(url) as other:
        assert [t.title for t in other.list_tasks()] == ["Someone else's"]


def test_two_clones_share_one_ledger_and_its_plan_keys(tmp_path: Path, cli: Cli) -> None:
    """A plan imported from one clone and again from another (at another path) updates the
    same tasks: plan sources are named from the repository, not the machine's path."""
    from conftest import make_git_repo

    url = pg_helpers.new_database()
    plan = '[[task]]\nkey = "k1"\ntitle = "from a plan"\n'
    clones = [make_git_repo(tmp_path / name) for name in ("one", "two")]
    for repo in clones:
        cli("init", "--prefix", "tm", "--database", url, cwd=repo).ok()
        (repo / "plan.toml").write_text(plan, encoding="utf-8")
    cli("import", "plan.toml", cwd=clones[0]).ok()
    (clones[1] / "plan.toml").write_text(plan.replace("from a plan", "renamed"))
    cli("import", "plan.toml", cwd=clones[1]).ok()
    listed = json.loads(cli("list", "--json", cwd=clones[0]).ok().stdout)
    assert [t["title"] for t in listed] == ["renamed"]
