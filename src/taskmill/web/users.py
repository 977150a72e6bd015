"""The people of a dashboard (``taskmill serve --users FILE``): a token per person, so every
request acts as the person whose token it carries and the audit trail names them.

The file maps each person to their token, as TOML (``alice = "TOKEN"``) or JSON
(``{"alice": "TOKEN"}``). It holds secrets: it must be readable by its owner only (mode
0600) and must not be inside the repository (it would be committed). Its usual place is the
user's config directory, ``$XDG_CONFIG_HOME/taskmill/users.toml``
(``~/.config/taskmill/users.toml``).
"""

from __future__ import annotations

import json
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidInput

PERSON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_MIN = 16
RESERVED = ("mill:", "taskmill")


def default_users_file(env: Mapping[str, str]) -> Path:
    """Where the users file usually lives: the user's config directory."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "taskmill" / "users.toml"


def load_users(path: Path, *, repo_root: Path | None = None) -> dict[str, str]:
    """The token -> person map of ``path`` (checked: mode 0600, outside the repository,
    one token per person, tokens unique and long enough)."""
    path = path.expanduser()
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidInput(f"--users {path}: cannot read: {exc.strerror or exc}",
                           hint="a file mapping each person to a token, e.g. "
                                f"{default_users_file({'HOME': '~'})}: alice = \"TOKEN\"") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise InvalidInput(f"--users {path}: it holds tokens but others can read it (mode "
                           f"{stat.S_IMODE(st.st_mode):o})", hint=f"chmod 600 {path}")
    if repo_root is not None and path.resolve().is_relative_to(repo_root.resolve()):
        raise InvalidInput(f"--users {path}: it is inside the repository, where it could be "
                           "committed", hint=f"move it to {default_users_file({'HOME': '~'})}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidInput(f"--users {path}: not valid {kind}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"--users {path}: map each person to their token "
                           "(alice = \"TOKEN\")")
    out: dict[str, str] = {}
    for person, token in data.items():
        if not PERSON_RE.match(person) or person.startswith(RESERVED):
            raise InvalidInput(f"--users {path}: {person!r} is not a person's name (letters, "
                               "digits, '.', '_', '@', '-'; not mill: or taskmill)")
        if not isinstance(token, str) or len(token) < TOKEN_MIN:
            raise InvalidInput(f"--users {path}: {person}'s token must be a string of at "
                               f"least {TOKEN_MIN} characters",
                               hint="python3 -c 'import secrets; print(secrets.token_urlsafe"
                                    "(24))' makes one")
        if token in out:
            raise InvalidInput(f"--users {path}: {person} and {out[token]} have the same "
                               "token")
        out[token] = person
    return out
