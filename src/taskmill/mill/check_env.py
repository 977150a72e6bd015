"""What a check sees: its environment, its command checked before the first turn, and a
warning when the project's Python environment would test the main checkout.

Checks run code the agent wrote, so they get the clean environment agents get
(:func:`taskmill.agents.envs.basic_env`: ``PATH`` without taskmill's own virtualenv, the
user's ``HOME``, locale, ``TERM=dumb``, ``NO_COLOR=1``, ``CI=1``), plus what ``[checks]
pass_env`` copies from taskmill's environment and what ``[checks] env`` sets. Nothing else of
taskmill's environment (API keys, ``VIRTUAL_ENV``) reaches them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..agents.envs import basic_env

FORBIDDEN_PASS_ENV = frozenset({"VIRTUAL_ENV"})
"""Never copied from taskmill's environment: it names taskmill's own virtualenv."""

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_BARE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_NOT_FOUND = re.compile(r"^bash: (?:line \d+: )?([^:\n]+): command not found$", re.MULTILINE)
EXIT_NOT_FOUND = 127


def check_env(parent_env: Mapping[str, str], *, env: Mapping[str, str] | None = None,
              pass_env: Sequence[str] = ()) -> dict[str, str]:
    """The environment of every check command (task checks and the merge queue's).

    ``PATH`` is always there (taskmill's, without its virtualenv); ``[checks] env`` may
    replace it. ``HOME`` is the user's, so toolchains found through it (rustup, pyenv, nvm)
    keep working. ``PYTHONDONTWRITEBYTECODE=1``: a check must not leave ``__pycache__`` in
    the worktree (taskmill commits what is left there), nor test stale bytecode: an edit
    that keeps a file's size within the second of the last check is invisible to Python's
    mtime-and-size check of its ``.pyc``."""
    home = parent_env.get("HOME") or tempfile.gettempdir()
    result = basic_env(parent_env, home)
    result["PYTHONDONTWRITEBYTECODE"] = "1"
    for name in pass_env:
        if name in FORBIDDEN_PASS_ENV or name == "PATH":
            continue
        value = parent_env.get(name)
        if value is not None:
            result[name] = value
    result.update({str(k): str(v) for k, v in (env or {}).items()})
    return result


# -- the command a check runs --------------------------------------------------------------


def command_name(command: str) -> str | None:
    """The first word of ``command`` after leading ``VAR=value`` assignments (and ``!``),
    or None when it cannot be told without running a shell (quotes that do not close,
    ``$VAR``, a subshell)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        return None
    for word in words:
        if _ASSIGNMENT.match(word) or word == "!":
            continue
        return word
    return None


def _bare(word: str | None) -> str | None:
    """``word`` when it is a plain command name (looked up on PATH), else None."""
    return word if word is not None and _BARE_NAME.fullmatch(word) else None


def missing_commands(names: Iterable[str], env: Mapping[str, str], cwd: Path) -> set[str]:
    """The names bash does not know as a keyword, builtin, function or file on ``env``'s PATH."""
    names = sorted(set(names))
    if not names:
        return set()
    script = 'for n do type -t "$n" >/dev/null 2>&1 || printf "%s\\n" "$n"; done'
    proc = subprocess.run(["bash", "-c", script, "taskmill", *names], cwd=cwd, env=dict(env),
                          capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:  # bash itself failed: validate nothing rather than guess
        return set()
    return {line for line in proc.stdout.splitlines() if line}


def _commands_on_path(path: str) -> set[str]:
    names: set[str] = set()
    for directory in path.split(os.pathsep):
        try:
            with os.scandir(directory or ".") as entries:
                for entry in entries:
                    if entry.is_file() and os.access(entry.path, os.X_OK):
                        names.add(entry.name)
        except OSError:
            continue
    return names


def did_you_mean(name: str, env: Mapping[str, str]) -> str | None:
    """The command on ``env``'s PATH closest to ``name``, when one is close."""
    matches = difflib.get_close_matches(name, sorted(_commands_on_path(env.get("PATH", ""))),
                                        n=1, cutoff=0.75)
    return matches[0] if matches else None


def not_found_message(name: str, command: str, env: Mapping[str, str]) -> str:
    suggestion = did_you_mean(name, env)
    hint = f"; did you mean `{suggestion}`?" if suggestion else ""
    return (f"check command not found: `{name}` (in the check `{command}`) is not a command "
            f"on the checks' PATH ({env.get('PATH', '')}){hint}")


def not_found_in_output(output: str) -> str | None:
    """The command bash itself reported as not found (``bash: line 1: NAME: command not
    found``), when a check exited 127. A script the check runs reports its own name instead,
    so a missing command inside the agent's own script does not count."""
    match = _NOT_FOUND.search(output)
    return match.group(1).strip() if match else None


# -- an editable install of the project pointing at the main checkout -----------------------


def _site_packages(venv: Path) -> list[Path]:
    return [*venv.glob("lib/python*/site-packages"), venv / "Lib" / "site-packages"]


def _editable_paths(site: Path) -> list[tuple[str, Path]]:
    """(distribution, path) of each editable install in ``site``: PEP 610 ``direct_url.json``
    and setuptools' ``__editable__*.pth`` (path lines, and the paths its finder maps to)."""
    found: list[tuple[str, Path]] = []
    for url_file in site.glob("*.dist-info/direct_url.json"):
        try:
            data = json.loads(url_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        url = data.get("url") if isinstance(data, dict) else None
        dir_info = data.get("dir_info") if isinstance(data, dict) else None
        if (isinstance(url, str) and url.startswith("file:") and isinstance(dir_info, dict)
                and dir_info.get("editable") is True):
            name = url_file.parent.name.split("-")[0]
            found.append((name, Path(unquote(urlparse(url).path))))
    for pth in site.glob("__editable__*.pth"):
        name = pth.name[len("__editable__"):].strip("._").split("-")[0]
        try:
            lines = pth.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        found += [(name, Path(line.strip())) for line in lines
                  if line.strip().startswith("/")]
    for finder in site.glob("__editable___*_finder.py"):
        name = finder.name[len("__editable___"):-len("_finder.py")]
        try:
            text = finder.read_text(encoding="utf-8")
        except OSError:
            continue
        mapping = re.search(r"^MAPPING\b[^=]*=\s*(\{.*?\})", text, re.MULTILINE | re.DOTALL)
        if mapping:
            found += [(name, Path(p)) for p in re.findall(r"'(/[^']+)'", mapping.group(1))]
    return found


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def check_venvs(commands: Iterable[str], env: Mapping[str, str]) -> list[Path]:
    """The virtualenvs the checks' Python comes from: that of ``python``/``python3`` on the
    checks' PATH, of ``$VIRTUAL_ENV`` when ``[checks] env`` sets it, and of each command's
    first word (``/path/.venv/bin/python``, ``pytest`` found in a venv's ``bin``)."""
    path = env.get("PATH", "")
    programs: list[str] = []
    for name in ("python", "python3"):
        hit = shutil.which(name, path=path)
        if hit:
            programs.append(hit)
    for command in commands:
        word = command_name(command)
        if word and os.path.isabs(word):
            programs.append(word)
        elif _bare(word):
            hit = shutil.which(str(word), path=path)
            if hit:
                programs.append(hit)
    roots = [Path(p).parent.parent for p in programs]  # bin/python -> the venv (no resolve:
    if env.get("VIRTUAL_ENV"):                          # a venv's python links elsewhere)
        roots.append(Path(env["VIRTUAL_ENV"]))
    venvs: list[Path] = []
    for root in roots:
        if (root / "pyvenv.cfg").is_file() and root not in venvs:
            venvs.append(root)
    return venvs


def editable_installs_of_checkout(venv: Path, checkout: Path,
                                  worktrees: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """Editable installs in ``venv`` whose code is in the main ``checkout`` (not in one of
    the ``worktrees`` directories, which may live inside it)."""
    root = _real(checkout)
    pools = [_real(w) for w in worktrees]
    hits: list[tuple[str, Path]] = []
    for site in _site_packages(venv):
        if not site.is_dir():
            continue
        for name, path in _editable_paths(site):
            real = _real(path)
            inside = _inside(real, root) and not any(_inside(real, pool) for pool in pools)
            if inside and (name, real) not in hits:
                hits.append((name, real))
    return hits


def editable_warning(venv: Path, hits: Sequence[tuple[str, Path]], checkout: Path) -> str:
    what = ", ".join(f"{name} -> {path}" for name, path in hits)
    return (f"the checks' Python environment {venv} has an editable install of the project "
            f"pointing at the main checkout {checkout} ({what}), not at the task's worktree: "
            "checks that import it test the code in the main checkout, not the agent's work. "
            "Run the checks with an environment of the worktree's own (e.g. `uv run pytest`), "
            "or put the worktree's code first (e.g. `PYTHONPATH=src python -m pytest`)")


# -- per run ---------------------------------------------------------------------------------


@dataclass
class CheckGuard:
    """One run's check-command validation (cached) and its once-per-run warnings."""

    env: Mapping[str, str]
    checkout: Path
    """The user's main checkout (bash runs there to look names up)."""
    worktrees: Sequence[Path] = ()
    """Where the task worktrees live (an editable install there is fine)."""
    _missing: dict[str, bool] = field(default_factory=dict)
    _warned: set[Path] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self, commands: Sequence[str]) -> list[str]:
        """Why each of ``commands`` cannot run: a bare command name bash cannot find.

        A path (``./run-tests.sh``, ``bin/check``) is not validated: the agent may create
        it."""
        names = {c: _bare(command_name(c)) for c in commands}
        wanted = {n for n in names.values() if n is not None}
        with self._lock:
            unknown = wanted - set(self._missing)
            if unknown:
                missing = missing_commands(unknown, self.env, self.checkout)
                self._missing.update({n: n in missing for n in unknown})
            return [not_found_message(name, command, self.env)
                    for command, name in names.items() if name and self._missing[name]]

    def new_warnings(self, commands: Sequence[str]) -> list[str]:
        """Warnings about ``commands``' Python environments not given before in this run."""
        out = []
        for venv in check_venvs(commands, self.env):
            with self._lock:
                if venv in self._warned:
                    continue
                self._warned.add(venv)
            hits = editable_installs_of_checkout(venv, self.checkout, self.worktrees)
            if hits:
                out.append(editable_warning(venv, hits, self.checkout))
        return out
