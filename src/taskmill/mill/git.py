"""A small, typed wrapper over the git command line; failures become :class:`GitError`."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import GitError

TRAILER = "Taskmill-Task"
LAP_TRAILER = "Taskmill-Lap"
"""Which lap of the task (its n-th dispatch; a reopened task starts a new lap) landed. A
landing without it (made before laps were recorded) is lap 1."""


@dataclass(frozen=True)
class Git:
    """git in one directory, with a fixed environment."""

    cwd: Path
    env: Mapping[str, str]

    def run(self, *args: str, check: bool = True, input_text: str | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=self.cwd, env=dict(self.env), capture_output=True,
                text=True, input=input_text, timeout=timeout, check=False,
                stdin=None if input_text is not None else subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise GitError("git is not installed or not on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {' '.join(args)} timed out after {timeout:.0f}s") from exc
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed in {self.cwd}: "
                           f"{(proc.stderr or proc.stdout).strip()[:2000]}")
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False).returncode == 0

    def at(self, path: Path) -> Git:
        """git in ``path``, found by git's usual discovery (never bound to another tree)."""
        return Git(path, unbound_env(self.env))

    def bound(self, work_tree: Path, git_dir: Path) -> Git:
        """git bound to one worktree: ``GIT_DIR`` and ``GIT_WORK_TREE`` are explicit, so
        whatever happened to ``work_tree/.git`` (removed, replaced by ``git init``), no
        command can act on another checkout (git's walk up would find the user's)."""
        env = {**unbound_env(self.env), "GIT_DIR": str(git_dir),
               "GIT_WORK_TREE": str(work_tree)}
        return Git(work_tree, env)

    # -- refs ------------------------------------------------------------------------------

    def rev(self, ref: str) -> str | None:
        proc = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None

    def tree_of(self, ref: str) -> str:
        return self.out("rev-parse", f"{ref}^{{tree}}")

    def current_branch(self) -> str | None:
        """The branch checked out here (None when detached), read from git's HEAD file."""
        try:
            text = (self.git_dir() / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            proc = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
            return proc.stdout.strip() or None
        prefix = "ref: refs/heads/"
        return text[len(prefix):] if text.startswith(prefix) else None

    def update_ref(self, ref: str, new: str, old: str | None, message: str) -> bool:
        """Compare-and-swap a ref; False when it no longer points at ``old``."""
        args = ["update-ref", "-m", message, ref, new]
        if old is not None:
            args.append(old)
        return self.run(*args, check=False).returncode == 0

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", a, b)

    def find_landed(self, target: str, task_id: str, *, lap: int | None = None,
                    since: str | None = None) -> str | None:
        """The newest commit on ``target`` whose trailer names ``task_id`` (and, given
        ``lap``, that lap of the task: a reopened task's earlier landings are not its
        current one), if any."""
        rng = target if since is None else f"{since}..{target}"
        wanted = f"{TRAILER}: {task_id}"
        out = self.out("log", "--format=%H%x00%B%x01", "--fixed-strings", f"--grep={wanted}",
                       rng, "--")
        # --grep matches substrings: the trailer of tm-ab (or tm-a.1) also contains tm-a's
        for record in out.split("\x01"):
            sha, _, body = record.partition("\x00")
            found = landing_lap(body, task_id)
            if found is not None and (lap is None or found == lap):
                return sha.strip()
        return None

    # -- working tree ----------------------------------------------------------------------

    def status_porcelain(self) -> str:
        return self.out("status", "--porcelain", "--untracked-files=all")

    def commit_all(self, message: str) -> bool:
        """Stage everything and commit; False when there was nothing to commit."""
        self.run("add", "-A")
        proc = self.run("commit", "-q", "--no-verify", "-m", message, check=False)
        if proc.returncode == 0:
            return True
        if not (self.git_dir() / "MERGE_HEAD").exists() and self.ok("diff", "--cached", "--quiet"):
            return False  # nothing to commit (the common "no change" turn)
        raise GitError(f"git commit failed in {self.cwd}: "
                       f"{(proc.stderr or proc.stdout).strip()[:2000]}")

    def git_dir(self) -> Path:
        bound = self.env.get("GIT_DIR")
        if bound:
            return Path(bound)
        # read from the checkout's .git (a directory, or a linked worktree's "gitdir:" file)
        # without running git: the mill asks for it several times per task
        dotgit = self.cwd / ".git"
        if dotgit.is_dir():
            return dotgit
        if dotgit.is_file():
            text = dotgit.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                linked = Path(text[len("gitdir:"):].strip())
                return linked if linked.is_absolute() else (self.cwd / linked)
        path = Path(self.out("rev-parse", "--git-dir"))
        return path if path.is_absolute() else (self.cwd / path)


def landing_lap(message: str, task_id: str) -> int | None:
    """The lap of ``task_id`` that a landing commit's message records (1 when it has no
    lap line); None when the message is not a landing of ``task_id``."""
    wanted = f"{TRAILER}: {task_id}"
    # the task's line and its lap line are in one paragraph (the trailers, at the end)
    for paragraph in reversed(message.strip().split("\n\n")):
        lines = [line.strip() for line in paragraph.splitlines()]
        if wanted not in lines:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key == LAP_TRAILER and value.strip().isdigit():
                return int(value.strip())
        return 1
    return None


def unbound_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that point git at a repository or an index."""
    return {k: v for k, v in env.items()
            if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")}


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment for taskmill's own git calls: the user's, without prompts."""
    env = dict(base)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    env["GIT_EDITOR"] = "true"
    return unbound_env(env)


def identity_env(git: Git) -> dict[str, str]:
    """The repository's git identity as environment variables (taskmill's when none is set)."""
    name = git.run("config", "user.name", check=False).stdout.strip() or "taskmill"
    email = git.run("config", "user.email", check=False).stdout.strip() or "taskmill@localhost"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def ensure_identity(git: Git) -> dict[str, str]:
    """Environment additions so commits work in a repository with no user identity."""
    if git.run("config", "user.email", check=False).stdout.strip():
        return {}
    return {"GIT_AUTHOR_NAME": "taskmill", "GIT_AUTHOR_EMAIL": "taskmill@localhost",
            "GIT_COMMITTER_NAME": "taskmill", "GIT_COMMITTER_EMAIL": "taskmill@localhost"}


def merge_tree(git: Git, base: str | None, ours: str, theirs: str) -> tuple[str | None, str]:
    """Merge two commits without a working tree; (tree id, "") or (None, conflict text).

    ``base`` is ignored (pass None): git computes the merge base of the two commits."""
    # git < 2.40 has no --merge-base; it computes the same base from the two commits
    del base
    proc = git.run("merge-tree", "--write-tree", "--messages", ours, theirs, check=False)
    if proc.returncode == 0:
        return proc.stdout.split()[0], ""
    if proc.returncode == 1:
        return None, proc.stdout
    raise GitError(f"git merge-tree failed: {proc.stderr.strip()}")


def commit_tree(git: Git, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args.extend(["-p", parent])
    return git.run(*args, input_text=message).stdout.strip()
