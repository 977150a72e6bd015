"""The real project of the real-project flow, downloaded once into a cache folder.

python-humanize's sdist, at a pinned version, from PyPI (``pip download --no-deps
--no-binary :all: humanize==VERSION``): it ships the project's tests, so its real test suite
can be the checks. Its test dependencies go into a virtual environment of their own in the
cache (``<cache>/venv``): the checks run the *project's* interpreter, never taskmill's. The
venv holds only the test dependencies, not humanize itself: the checks put the worktree's
``src`` on ``PYTHONPATH``, so they always test the code of the worktree they run in (an
editable install would test the checkout it was made from, a regular one a frozen copy).

The default cache is ``$TASKMILL_REAL_PROJECT_CACHE``, else ``.cache/real-project`` under the
project root (ignored by git). Nothing of humanize is committed to taskmill.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .agent_install import project_root
from .real_project_changes import HUMANIZE_VERSION

PROJECT = "humanize"
TEST_DEPENDENCIES = ("freezegun==1.5.5", "pytest==9.2.0", "pytest-benchmark==5.3.1")
"""The sdist's ``tests`` extra, pinned (its coverage and codspeed plugins are not needed)."""
CACHE_ENV = "TASKMILL_REAL_PROJECT_CACHE"
PIP_TIMEOUT = 600.0


class PrepareError(RuntimeError):
    """The download or the venv could not be made."""


def default_cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else project_root() / ".cache" / "real-project"


@dataclass(frozen=True)
class Cache:
    root: Path

    @property
    def sdist(self) -> Path:
        return self.root / f"{PROJECT}-{HUMANIZE_VERSION}.tar.gz"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.venv / ".taskmill-installed"

    def stamp_text(self) -> str:
        return "\n".join(TEST_DEPENDENCIES) + "\n"

    def missing_reason(self) -> str | None:
        """Why the cache cannot be used yet (None when it can)."""
        how = (f"run `make real-project-cache` (or `python -m taskmill.testing.real_project "
               f"--cache {self.root} --prepare-only`)")
        if not self.sdist.is_file():
            return f"{self.sdist.name} is not in {self.root}: {how}"
        try:
            installed = self.stamp.read_text(encoding="utf-8")
        except OSError:
            installed = ""
        if installed != self.stamp_text() or not self.python.exists():
            return f"the project's test venv {self.venv} is missing or out of date: {how}"
        return None


def _pip(python: Path | str, *args: str) -> None:
    # few retries and a short timeout: without a network, fail fast (the tests then skip)
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "--retries", "2",
               "--timeout", "20", *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise PrepareError(f"{' '.join(command)} timed out after {PIP_TIMEOUT:g}s") from exc
    if proc.returncode != 0:
        raise PrepareError(f"{' '.join(command)} failed (exit {proc.returncode}):\n"
                           f"{(proc.stderr or proc.stdout)[-2000:]}")


def sdist_top(sdist: Path) -> str:
    """The sdist's top folder, after checking it ships the project's tests."""
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = f"{PROJECT}-{HUMANIZE_VERSION}"
    if not any(n.startswith(f"{top}/tests/test_") for n in names):
        raise PrepareError(f"{sdist} has no {top}/tests/: its test suite cannot be the checks")
    return top


def prepare(cache: Cache, *, python: str = sys.executable, force: bool = False,
            say: Callable[[str], None] = print) -> None:
    """Download the sdist and make the project's test venv (each skipped when present)."""
    cache.root.mkdir(parents=True, exist_ok=True)
    if force or not cache.sdist.is_file():
        say(f"downloading {PROJECT}=={HUMANIZE_VERSION} (sdist) into {cache.root}")
        _pip(python, "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--dest", str(cache.root), f"{PROJECT}=={HUMANIZE_VERSION}")
        if not cache.sdist.is_file():
            raise PrepareError(f"pip download did not leave {cache.sdist}")
    sdist_top(cache.sdist)
    if force or cache.missing_reason() is not None:
        say(f"creating the project's test venv {cache.venv}: {' '.join(TEST_DEPENDENCIES)}")
        cache.stamp.unlink(missing_ok=True)
        proc = subprocess.run([python, "-m", "venv", "--clear", str(cache.venv)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PrepareError(f"python -m venv failed: {proc.stderr.strip()}")
        _pip(cache.python, "install", "--quiet", *TEST_DEPENDENCIES)
        cache.stamp.write_text(cache.stamp_text(), encoding="utf-8")
    say(f"ready: {cache.sdist.name} and {cache.venv}")
