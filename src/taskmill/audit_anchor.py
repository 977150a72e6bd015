"""Anchors of the audit chain outside the database: signed commits on ``refs/taskmill/audit``.

The hash chain in the database (:mod:`taskmill.audit`) catches an edit of one event, but
whoever can write the database can also rewrite the whole chain, cut its end or append to
it consistently. An *anchor* records the chain's head (its length ``seq`` and the hash of
event ``seq``) where the database cannot reach: a commit on ``refs/taskmill/audit`` in the
repository's git, whose message holds the head, the time and the previous anchor, and whose
parent is the previous anchor. It is made with plumbing only (``commit-tree`` of the empty
tree, then ``update-ref`` with compare-and-swap), so no working tree or index is touched.

Each anchor commit is signed (``commit-tree -S``, an SSH signature made by ``ssh-keygen -Y
sign``) with a key kept outside the ledger: the SSH signing key git already knows
(``gpg.format=ssh`` and ``user.signingkey``), else a key taskmill creates on first use,
``<config dir>/taskmill/audit_ed25519`` (mode 0600). Signatures are checked against an
allowed-signers file next to that key (``audit_allowed_signers``), or git's own
``gpg.ssh.allowedSignersFile`` when git's key is used. Since every anchor names its parent,
a good signature on the newest anchor vouches for every earlier one.

Next to the key, taskmill also remembers the last anchor it wrote for each repository (the
*high-water mark*): an anchor ref moved back to an older anchor, or replaced, is caught even
though each anchor on it is validly signed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .audit import GENESIS, canonical, chain_hash
from .errors import GitError, TaskmillError
from .mill.git import Git, git_env

if TYPE_CHECKING:
    from .ledger.store import LedgerStore

AUDIT_REF = "refs/taskmill/audit"
KEY_NAME = "audit_ed25519"
ALLOWED_SIGNERS = "audit_allowed_signers"
MARKS_DIR = "audit_anchors"
PRINCIPAL = "taskmill-audit"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IDENTITY = {"GIT_AUTHOR_NAME": "taskmill", "GIT_AUTHOR_EMAIL": "taskmill@localhost",
            "GIT_COMMITTER_NAME": "taskmill", "GIT_COMMITTER_EMAIL": "taskmill@localhost"}
SIGN_TIMEOUT_S = 20.0

_FIELD = re.compile(r"^Taskmill-Audit-(Anchor|Seq|Head|Time|Prev): *(\S+) *$", re.MULTILINE)


class AuditError(TaskmillError):
    code = "audit"
    exit_code = 5


def config_home(env: Mapping[str, str]) -> Path:
    """The user's configuration directory: ``$XDG_CONFIG_HOME``, else ``~/.config``."""
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg)
    home = env.get("HOME")
    if not home:
        raise AuditError("neither XDG_CONFIG_HOME nor HOME is set: there is no place for the"
                         " audit signing key", hint="set HOME (or XDG_CONFIG_HOME)")
    return Path(home) / ".config"


@dataclass(frozen=True)
class Anchor:
    number: int
    seq: int
    head: str
    time: str
    prev: str | None
    commit: str
    signed: bool

    def to_json(self) -> dict[str, object]:
        return {"anchor": self.number, "seq": self.seq, "head": self.head, "time": self.time,
                "prev": self.prev, "commit": self.commit, "signed": self.signed}


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    key: str | None
    """The signing key's fingerprint (``SHA256:...``), when git reports one."""
    detail: str


def anchor_message(number: int, seq: int, head: str, time: str, prev: str | None) -> str:
    first = f"events 1..{seq}" if seq else "no events"
    return (f"taskmill audit anchor {number}: {first}\n\n"
            f"Taskmill-Audit-Anchor: {number}\nTaskmill-Audit-Seq: {seq}\n"
            f"Taskmill-Audit-Head: {head}\nTaskmill-Audit-Time: {time}\n"
            f"Taskmill-Audit-Prev: {prev or 'none'}\n")


def parse_anchor(commit: str, message: str, signed: bool) -> Anchor | None:
    fields = dict(_FIELD.findall(message))
    try:
        prev = fields["Prev"]
        return Anchor(int(fields["Anchor"]), int(fields["Seq"]), fields["Head"],
                      fields["Time"], None if prev == "none" else prev, commit, signed)
    except (KeyError, ValueError):
        return None


class Signer:
    """The key anchors are signed with, and the allowed-signers file that checks them."""

    def __init__(self, config_dir: Path, git: Git) -> None:
        self.dir = config_dir / "taskmill"
        self.git = git
        self.key_path = self.dir / KEY_NAME
        self.allowed = self.dir / ALLOWED_SIGNERS

    def git_key(self) -> str | None:
        """git's own SSH signing key (``user.signingkey`` with ``gpg.format=ssh``), if set."""
        fmt = self.git.run("config", "gpg.format", check=False).stdout.strip()
        key = self.git.run("config", "user.signingkey", check=False).stdout.strip()
        return key if fmt == "ssh" and key else None

    def available(self) -> bool:
        """Whether a key exists to check signatures with (no key is created)."""
        return self.allowed_file() is not None

    def allowed_file(self) -> Path | None:
        if self.git_key() is not None:
            own = self.git.run("config", "gpg.ssh.allowedSignersFile", check=False).stdout.strip()
            if own:
                return Path(own).expanduser()
        return self.allowed if self.allowed.is_file() else None

    def sign_args(self, *, create: bool) -> list[str] | None:
        """The ``git -c ...`` options that make ``commit-tree -S`` sign with the key (created
        when ``create`` and missing); None when no key can be had (no ``ssh-keygen``)."""
        git_key = self.git_key()
        if git_key is not None:
            self._allow_git_key(git_key)
            return []
        if not self.key_path.is_file():
            if not create or shutil.which("ssh-keygen") is None:
                return None
            self._create_key()
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key_path}"]

    def verify_args(self) -> list[str]:
        allowed = self.allowed_file()
        return ["-c", f"gpg.ssh.allowedSignersFile={allowed}"] if allowed else []

    def _create_key(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / f".{KEY_NAME}.{os.getpid()}"
        for path in (tmp, tmp.with_name(tmp.name + ".pub")):
            path.unlink(missing_ok=True)
        proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL,
                               "-f", str(tmp)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise AuditError(f"could not create the audit signing key: {proc.stderr.strip()}")
        os.chmod(tmp, 0o600)
        public = tmp.with_name(tmp.name + ".pub").read_text(encoding="utf-8").strip()
        if self.key_path.exists():  # another process made it first: keep theirs
            tmp.unlink()
            tmp.with_name(tmp.name + ".pub").unlink()
            return
        os.replace(tmp.with_name(tmp.name + ".pub"), self.key_path.with_name(KEY_NAME + ".pub"))
        os.replace(tmp, self.key_path)
        self._add_allowed(public)

    def _allow_git_key(self, key: str) -> None:
        """Put git's signing key in taskmill's allowed-signers file (unless git has its own)."""
        if self.git.run("config", "gpg.ssh.allowedSignersFile", check=False).stdout.strip():
            return
        if key.startswith("key::"):
            public = key[len("key::"):]
        elif key.startswith(("ssh-", "ecdsa-", "sk-")):
            public = key
        else:
            path = Path(key).expanduser()
            pub = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
            try:
                public = pub.read_text(encoding="utf-8").strip()
            except OSError:
                return
        self._add_allowed(public)

    def _add_allowed(self, public: str) -> None:
        parts = public.split()
        line = f'{PRINCIPAL} namespaces="git" {" ".join(parts[:2])}\n'
        have = self.allowed.read_text(encoding="utf-8") if self.allowed.is_file() else ""
        if line not in have:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.allowed.open("a", encoding="utf-8") as out:
                out.write(line)


class AnchorStore:
    """The anchors of one repository (``git``: bound to its main checkout)."""

    def __init__(self, git: Git, config_dir: Path) -> None:
        self.git = Git(git.cwd, {**git_env(git.env), **IDENTITY})
        self.signer = Signer(config_dir, self.git)
        common = self.git.out("rev-parse", "--path-format=absolute", "--git-common-dir")
        digest = hashlib.sha256(os.path.realpath(common).encode()).hexdigest()[:24]
        self.mark_path = config_dir / "taskmill" / MARKS_DIR / digest
        self._tip: tuple[str | None, Anchor | None] | None = None
        self._tree_written = False
        self._sign_args: list[str] | None = None

    # -- reading ---------------------------------------------------------------------------

    def tip_commit(self) -> str | None:
        return self.git.rev(AUDIT_REF)

    def anchors(self) -> tuple[list[Anchor], list[str]]:
        """Every anchor on the ref, oldest first, and the problems with the ref's history
        (a commit that is not an anchor, a broken link to the previous anchor)."""
        if self.tip_commit() is None:
            return [], []
        out = self.git.out("log", "--first-parent", "--reverse", "--format=%H%x00%P%x00%B%x01",
                           AUDIT_REF, "--")
        signed = self._signed_commits()
        anchors: list[Anchor] = []
        problems: list[str] = []
        prev: Anchor | None = None
        for record in out.split("\x01"):
            if not record.strip():
                continue
            commit, parents, body = record.strip("\n").split("\x00", 2)
            anchor = parse_anchor(commit, body, commit in signed)
            if anchor is None:
                problems.append(f"commit {commit[:12]} on {AUDIT_REF} is not an anchor")
                continue
            want_prev = prev.commit if prev else None
            first_parent = parents.split()[0] if parents.split() else None
            if anchor.prev != want_prev or first_parent != want_prev:
                problems.append(f"anchor {anchor.number} ({commit[:12]}) does not link to the"
                                " anchor before it")
            elif prev is not None and (anchor.seq < prev.seq or anchor.number != prev.number + 1):
                problems.append(f"anchor {anchor.number} goes back from anchor {prev.number}")
            anchors.append(anchor)
            prev = anchor
        return anchors, problems

    def _signed_commits(self) -> set[str]:
        """The commits on the ref that carry a signature (checked or not)."""
        out = self.git.out("rev-list", "--first-parent", "--format=raw", AUDIT_REF)
        signed: set[str] = set()
        current = ""
        for line in out.splitlines():
            if line.startswith("commit "):
                current = line.split()[1]
            elif line.startswith("gpgsig"):
                signed.add(current)
        return signed

    def check_signature(self, commit: str) -> SignatureCheck:
        if not self.signer.available():
            return SignatureCheck(False, None, "no allowed-signers file to check it with")
        proc = self.git.run(*self.signer.verify_args(), "verify-commit", "--raw", commit,
                            check=False)
        text = (proc.stderr or proc.stdout).strip()
        key = re.search(r"(SHA256:[A-Za-z0-9+/=]+)", text)
        if proc.returncode == 0:
            return SignatureCheck(True, key.group(1) if key else None, text)
        return SignatureCheck(False, key.group(1) if key else None,
                              text.splitlines()[-1] if text else "no valid signature")

    def high_water(self) -> tuple[str, int] | None:
        """The last anchor this user's taskmill wrote for the repository (commit, seq)."""
        try:
            commit, seq = self.mark_path.read_text(encoding="utf-8").split()[:2]
            return commit, int(seq)
        except (OSError, ValueError):
            return None

    # -- writing ---------------------------------------------------------------------------

    def _current(self) -> tuple[str | None, Anchor | None]:
        """The ref's anchor: as this store last wrote or read it (the compare-and-swap of
        :meth:`anchor` finds out when another process moved it since), else read."""
        if self._tip is not None:
            return self._tip
        tip = self.tip_commit()
        if tip is None:
            self._tip = (None, None)
            return self._tip
        body = self.git.out("log", "-1", "--format=%B", tip, "--")
        anchor = parse_anchor(tip, body, False)
        self._tip = (tip, anchor)
        return tip, anchor

    def last(self) -> Anchor | None:
        return self._current()[1]

    def anchor(self, seq: int, head: str, time: str, *, sign: bool = True) -> Anchor | None:
        """Record the head ``(seq, head)``; None when the last anchor already records it.

        Raises :class:`AuditError` when the ref does not hold anchors, or when the head goes
        back from the last anchor."""
        if sign and self._sign_args is None:
            self._sign_args = self.signer.sign_args(create=True)
        sign_args = self._sign_args if sign else None
        if not self._tree_written:
            ensure_empty_tree(self.git)
            self._tree_written = True
        for _ in range(10):
            tip, last = self._current()
            if tip is not None and last is None:
                raise AuditError(f"{AUDIT_REF} points at {tip[:12]}, which is not an anchor",
                                 hint=f"inspect it with `git log {AUDIT_REF}`")
            if last is not None:
                if (last.seq, last.head) == (seq, head):
                    return None
                if seq < last.seq:
                    raise AuditError(f"the ledger's chain ({seq} events) is shorter than anchor"
                                     f" {last.number} ({last.seq} events)",
                                     hint="run `taskmill verify`")
            number = last.number + 1 if last else 1
            message = anchor_message(number, seq, head, time, tip)
            args = [*(sign_args or []), "commit-tree", *(["-S"] if sign_args is not None else []),
                    EMPTY_TREE, *(["-p", tip] if tip else [])]
            proc = self.git.run(*args, input_text=message, check=False, timeout=SIGN_TIMEOUT_S)
            if proc.returncode != 0:
                raise GitError(f"could not write the audit anchor: {proc.stderr.strip()[:500]}")
            commit = proc.stdout.strip()
            if self.git.update_ref(AUDIT_REF, commit, tip or "0" * 40, "taskmill: audit anchor"):
                anchor = Anchor(number, seq, head, time, tip, commit, sign_args is not None)
                self._tip = (commit, anchor)
                self._mark(commit, seq)
                return anchor
            self._tip = None  # another process anchored first: read its anchor and retry
        raise AuditError(f"{AUDIT_REF} kept moving while anchoring")

    def _mark(self, commit: str, seq: int) -> None:
        self.mark_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.mark_path.with_name(f".{self.mark_path.name}.{os.getpid()}")
        tmp.write_text(f"{commit} {seq}\n", encoding="utf-8")
        os.replace(tmp, self.mark_path)


def open_store(root: Path, env: Mapping[str, str]) -> tuple[AnchorStore | None, str]:
    """The anchors of the repository whose main checkout is ``root``; (None, why) when
    there are none to be had (not a git repository, no config directory)."""
    try:
        return AnchorStore(Git(root, git_env(env)), config_home(env)), ""
    except TaskmillError as exc:
        return None, f"no anchors could be read: {exc.message}"


def anchor_ledger(ledger: LedgerStore, store: AnchorStore, now: str, *,
                  sign: bool = True) -> Anchor | None:
    """Anchor the ledger's current head; None when the last anchor already records it.

    Only a head whose chain extends the last anchor is anchored: the events after it are
    re-hashed from the anchored hash (cheap: only those), so a rewritten or truncated log
    is refused (:class:`AuditError`) instead of being vouched for."""
    seq, head = ledger.audit_head()
    last = store.last()
    start, prev = (0, GENESIS) if last is None else (last.seq, last.head)
    if last is not None and last.seq > 0:
        at = ledger.event_hash(last.seq)
        if at is None or at != prev:
            raise AuditError(f"the ledger's event {last.seq} does not match anchor"
                             f" {last.number}: refusing to anchor", hint="run `taskmill verify`")
    expected = start + 1
    for eseq, ts, actor, task_id, kind, data, prev_hash, digest in ledger.event_rows(start,
                                                                                      seq):
        if (eseq != expected or prev_hash != prev
                or chain_hash(prev, canonical(eseq, ts, actor, task_id, kind, data)) != digest):
            raise AuditError(f"event {eseq} does not extend the chain from anchor"
                             f" {last.number if last else 0}: refusing to anchor",
                             hint="run `taskmill verify`")
        prev = digest
        expected += 1
    if expected - 1 != seq or prev != head:
        raise AuditError("the ledger's recorded head does not match its events: refusing to"
                         " anchor", hint="run `taskmill verify`")
    return store.anchor(seq, head, now, sign=sign)


def ensure_empty_tree(git: Git) -> None:
    """Write the empty tree object (git knows it, but a fresh repository may not hold it)."""
    git.run("hash-object", "-t", "tree", "-w", "--stdin", input_text="")
