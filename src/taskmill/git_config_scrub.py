"""A copy of a repository's git config with its secrets taken out, for the sandbox.

A sandboxed turn or check needs git's common directory (objects, refs, config) to use git in
its worktree, but ``.git/config`` can hold credentials: a token in a remote's URL
(``https://user:TOKEN@host/...``), an ``http.extraheader`` with an ``Authorization`` header (as
CI checkouts write), a ``credential.helper`` that would hand out the user's stored passwords.
The sandbox shows this scrubbed copy over ``.git/config`` instead (see
:class:`taskmill.sandbox.Sandbox`). Everything else is kept as it is, so git behaves the same.

Read through ``git config --list -z`` (git's own parser, so quoting, continuation lines and
case rules are git's), written back in git's syntax with every value quoted.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

DROPPED_SECTIONS = ("credential",)
"""Sections dropped whole (with every subsection): ``credential.helper`` and its kin."""

SECRET_NAMES = frozenset({"extraheader", "password", "token", "accesstoken", "cookiefile",
                          "sslkeypasswordprotected", "proxyauthmethod"})
"""Variable names (the part after the last dot, lower case) whose values are dropped."""

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
"""``scheme://userinfo@``: what a URL carries its credentials in."""


def entries(config: Path, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(key, value)`` of every variable in ``config`` in file order (includes not
    followed). A key is ``section[.subsection].name``, section and name in lower case."""
    proc = subprocess.run(["git", "config", "--file", str(config), "--list", "-z"],
                          capture_output=True, env=dict(env) if env is not None else None,
                          check=False)
    if proc.returncode != 0:
        raise ValueError(f"git cannot read {config}: "
                         f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    out: list[tuple[str, str]] = []
    for item in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            key, _, value = item.partition("\n")
            out.append((key, value))
    return out


def scrub(key: str, value: str) -> tuple[str, str] | None:
    """The variable as it is kept (None: dropped): URLs lose their credentials, in values and
    in subsections (``[url "https://user:TOKEN@host/"] insteadOf = ...``)."""
    head, _, name = key.rpartition(".")
    section, dot, sub = head.partition(".")
    if section in DROPPED_SECTIONS or name in SECRET_NAMES:
        return None
    if dot:
        key = f"{section}.{_no_userinfo(sub)}.{name}"
    return key, _no_userinfo(value)


def _no_userinfo(text: str) -> str:
    return _USERINFO.sub(r"\1", text)


def _quote(value: str) -> str:
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t").replace("\b", "\\b"))
    return f'"{escaped}"'


def render(items: list[tuple[str, str]]) -> str:
    """``items`` in git config syntax, one section header each time the section changes."""
    lines: list[str] = []
    current: tuple[str, str | None] | None = None
    for key, value in items:
        head, _, name = key.rpartition(".")
        section, dot, sub = head.partition(".")
        where = (section, sub if dot else None)
        if where != current:
            current = where
            if where[1] is None:
                lines.append(f"[{section}]")
            else:
                subsection = where[1].replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'[{section} "{subsection}"]')
        lines.append(f"\t{name} = {_quote(value)}")
    return "\n".join(lines) + "\n"


def scrub_git_config(source: Path, dest: Path, env: Mapping[str, str] | None = None) -> int:
    """Write ``source`` without its secrets to ``dest`` (readable by the user alone).
    Returns how many variables were dropped or changed."""
    kept: list[tuple[str, str]] = []
    touched = 0
    for key, value in entries(source, env):
        clean = scrub(key, value)
        if clean != (key, value):
            touched += 1
        if clean is not None:
            kept.append(clean)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(render(kept))
    os.replace(tmp, dest)
    return touched
