"""The synced ledger's commits in git: trees read and written without a work tree or index.

Files go in as new blobs with one ``git fast-import`` (only those git lacks), a ``git
mktree`` a folder and a ``git commit-tree``, and come out with ``git ls-tree`` and one ``git
cat-file --batch``. Nothing here touches the
repository's work tree, index, branches or HEAD: only refs under ``refs/taskmill/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import GitError, InvalidInput

LEDGER_REF = "refs/taskmill/ledger"
"""The synced ledger, locally the last commit synced, on a remote the shared one."""


def remote_ref(remote: str) -> str:
    """Where a remote's synced ledger is fetched to."""
    return f"refs/taskmill/remotes/{remote}/ledger"


def blob_sha(content: bytes) -> str:
    """The id git gives a blob with ``content`` (without writing it)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Git:
    """git in one repository, with an environment passed in."""

    root: Path
    env: Mapping[str, str]

    def process_env(self) -> dict[str, str]:
        """The environment git runs in (without what would point it at another repository)."""
        env = {k: v for k, v in self.env.items()
               if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
        return env

    def run(self, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float | None = 300, detach: bool = False,
            extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """``detach``: in a session of its own, so ssh cannot ask on the terminal."""
        env = self.process_env() if extra_env is None else {**self.process_env(), **extra_env}
        try:
            proc = subprocess.run(["git", *args], cwd=self.root, env=env, input=input,
                                  capture_output=True, check=False, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL,
                                  start_new_session=detach)
        except FileNotFoundError as exc:
            raise GitError("git is not installed (or not on PATH)") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} did not finish in {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])} failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
        return proc

    def text(self, *args: str) -> str:
        return self.run(*args).stdout.decode().strip()

    # -- refs ---------------------------------------------------------------------------------

    def ref(self, name: str) -> str | None:
        proc = self.run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def set_ref(self, name: str, sha: str, old: str | None) -> None:
        """Move ``name`` to ``sha`` if it is still at ``old`` (None: did not exist)."""
        self.run("update-ref", "-m", "taskmill sync", name, sha, old or "0" * 40)

    def delete_ref(self, name: str) -> None:
        self.run("update-ref", "-d", name, check=False)

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def merge_base(self, a: str, b: str) -> str | None:
        proc = self.run("merge-base", a, b, check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def tree_of(self, commit: str) -> str:
        return self.text("rev-parse", f"{commit}^{{tree}}")

    # -- remotes ------------------------------------------------------------------------------

    def remotes(self) -> list[str]:
        return self.text("remote").split()

    def check_remote(self, remote: str) -> None:
        names = self.remotes()
        if remote not in names:
            have = f"this repository's remotes: {', '.join(names)}" if names else \
                "this repository has no remote"
            raise InvalidInput(f"no remote {remote!r} ({have})",
                               hint="add one (git remote add origin URL), or name one with"
                                    " --remote NAME")

    def fetch_ledger(self, remote: str) -> str | None:
        """Fetch the remote's synced ledger; its commit, or None when it has none yet."""
        target = remote_ref(remote)
        listed = self.run("ls-remote", "--refs", remote, LEDGER_REF, check=False)
        if listed.returncode != 0:
            raise GitError(f"cannot reach remote {remote!r}: "
                           f"{listed.stderr.decode(errors='replace').strip()}")
        if not listed.stdout.strip():
            self.delete_ref(target)
            return None
        self.run("fetch", "--quiet", "--no-tags", remote, f"+{LEDGER_REF}:{target}")
        return self.ref(target)

    def push_ledger(self, remote: str, commit: str, expected: str | None) -> None:
        """Push ``commit`` as the remote's ledger, if the remote is still at ``expected``."""
        lease = f"--force-with-lease={LEDGER_REF}:{expected or ''}"
        proc = self.run("push", "--quiet", "--porcelain", lease, remote,
                        f"{commit}:{LEDGER_REF}", check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            if "stale info" in detail or "rejected" in detail or "fetch first" in detail:
                from ..errors import Conflict

                raise Conflict(f"remote {remote!r} got a newer synced ledger while this one"
                               " was merged; nothing was pushed",
                               hint="run taskmill sync again (the ledger here is already"
                                    " merged: the next sync merges the newer one too)")
            raise GitError(f"git push to {remote!r} failed: {detail}")
        self.set_ref(remote_ref(remote), commit, None if expected is None else expected)

    # -- trees --------------------------------------------------------------------------------

    def read_tree(self, commit: str) -> dict[str, str]:
        """path -> blob id, for every file of ``commit``."""
        out = self.run("ls-tree", "-r", "-z", "--full-tree", commit).stdout
        files: dict[str, str] = {}
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, _, path = entry.partition(b"\t")
            _mode, kind, sha = meta.split()
            if kind == b"blob":
                files[path.decode("utf-8", errors="surrogateescape")] = sha.decode()
        return files

    def read_blobs(self, shas: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(shas))
        if not wanted:
            return {}
        out = self.run("cat-file", "--batch", input="".join(s + "\n" for s in wanted).encode())
        data = out.stdout
        blobs: dict[str, bytes] = {}
        pos = 0
        for sha in wanted:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            if len(header) != 3:
                raise GitError(f"git cat-file: no object {sha}")
            size = int(header[2])
            blobs[sha] = data[end + 1:end + 1 + size]
            pos = end + 1 + size + 1
        return blobs

    def write_commit(self, shas: Mapping[str, str], blobs: Mapping[str, bytes], *,
                     parents: list[str], message: str, when: int, author: str) -> str:
        """A commit of exactly the files ``shas`` (path -> blob id), with ``parents``; its
        id (no branch is moved). ``blobs``: the content of each blob git may not have yet
        (blob id -> bytes): a sync that changed a few tasks writes a few blobs."""
        name = author.replace("<", "").replace(">", "").replace("\n", " ").strip() or "taskmill"
        if blobs:  # one process for every new blob
            self._import_blobs(blobs.values())
        tree = self._write_tree(shas)
        ident = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                 for what, value in (("NAME", name), ("EMAIL", "taskmill@sync.invalid"),
                                     ("DATE", f"@{when} +0000"))}
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.run(*args, input=message.encode(), extra_env=ident).stdout.decode().strip()

    def _import_blobs(self, blobs: Iterable[bytes]) -> None:
        """Write ``blobs`` into the repository with one ``git fast-import``."""
        with self.blob_sink() as sink:
            for content in blobs:
                sink.write(content)

    @contextmanager
    def blob_sink(self, timeout: float = 300) -> Iterator[BlobSink]:
        """A :class:`BlobSink` whose blobs are in the repository when the block ends
        (on an error, fast-import is stopped: what it wrote is unreferenced)."""
        sink = BlobSink(self, timeout)
        try:
            yield sink
        except BaseException:
            sink.abort()
            raise
        sink.close()

    def _write_tree(self, entries: Mapping[str, str]) -> str:
        """The tree of ``entries`` (path -> blob id), its folders written first: with
        ``git mktree``, one process a folder (``fast-import`` looks a path up in its folder
        one entry at a time: a folder of 100,000 tasks took minutes)."""
        folders: dict[str, dict[str, str]] = {}
        lines: list[bytes] = []
        for path, sha in entries.items():
            head, slash, rest = path.partition("/")
            if slash:
                folders.setdefault(head, {})[rest] = sha
            else:
                lines.append(b"100644 blob %s\t%s\0"
                             % (sha.encode(), head.encode("utf-8", "surrogateescape")))
        for folder, inside in folders.items():
            lines.append(b"040000 tree %s\t%s\0" % (self._write_tree(inside).encode(),
                                                     folder.encode("utf-8", "surrogateescape")))
        return self.run("mktree", "-z", input=b"".join(lines)).stdout.decode().strip()


class BlobSink:
    """Blobs written into the repository by one ``git fast-import``, started at the first
    and each passed on as it comes (a first sync of a big ledger writes every task: none of
    them held). The blobs can be read once :meth:`close` returns."""

    def __init__(self, git: Git, timeout: float) -> None:
        self._git = git
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self.written = 0

    def write(self, content: bytes) -> None:
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(b"blob\ndata %d\n%s\n" % (len(content), content))
        except BrokenPipeError:
            self.close()  # (it stopped: its status and words)
            raise GitError("git fast-import stopped") from None
        self.written += 1

    def _start(self) -> None:
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close or abort)
        try:
            self._proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"],
                                          cwd=self._git.root, env=self._git.process_env(),
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._errors)
        except FileNotFoundError as exc:
            self._errors.close()
            raise GitError("git is not installed (or not on PATH)") from exc

    def close(self) -> None:
        """Wait for the blobs to be written; raises GitError when they were not."""
        proc, errors = self._proc, self._errors
        if proc is None or errors is None:
            return
        self._proc = None
        try:
            assert proc.stdin is not None
            try:
                with proc.stdin:
                    proc.stdin.write(b"done\n")
            except BrokenPipeError:
                pass  # (it stopped: its status and words below)
            try:
                code = proc.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise GitError(f"git fast-import did not finish in {self._timeout:.0f} s"
                               ) from exc
            if code != 0:
                errors.seek(0)
                raise GitError("git fast-import failed: "
                               f"{errors.read().decode(errors='replace').strip()}")
        finally:
            errors.close()

    def abort(self) -> None:
        proc, errors = self._proc, self._errors
        self._proc = None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if errors is not None:
            errors.close()


def has_synced_ledger(root: Path, env: Mapping[str, str], *, remote: str = "origin",
                      timeout: float = 10.0) -> str | None:
    """Where a synced ledger can be loaded from: ``"refs/taskmill/ledger"`` (here), the
    remote's name (its copy, asked with ``git ls-remote``), or None."""
    git = Git(root, env)
    try:
        if git.ref(LEDGER_REF) or git.ref(remote_ref(remote)):
            return LEDGER_REF
        if remote not in git.remotes():
            return None
        proc = git.run("ls-remote", "--refs", remote, LEDGER_REF, check=False, timeout=timeout,
                       detach=True)
    except GitError:
        return None
    return remote if proc.returncode == 0 and proc.stdout.strip() else None

