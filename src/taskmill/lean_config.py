"""What the CLI's lean path (:mod:`taskmill.cli.lean`) needs of a checked config file, kept
where it can read it without TOML, pydantic or :mod:`json`.

Whenever the full path opens a repository's SQLite ledger (:func:`taskmill.project.open_project`)
with a config file that passed its check, it writes ``.taskmill/run/lean.cache``: a header
naming this code's version and the few settings the lean path reads, then the config file's
bytes. The lean path uses the settings only while the config file is byte for byte that
copy, under the same version of taskmill and the same config schema (as the full path
trusts its own stamp, ``run/config.checked``); anything else (no cache yet, an edited
config, an upgrade) sends the command to the full path, which checks the file and writes a
fresh cache. A config the full path checks at every start (one naming a third-party agent
adapter: installed packages may have changed) gets no cache.

This module imports nothing but :mod:`os` (and the package's version).
"""

from __future__ import annotations

import os

CACHE_FILE = "lean.cache"
"""In the run directory (``.taskmill/run``, untracked)."""
FORMAT = 1


def _header(version: str) -> bytes | None:
    """The first line: this format, taskmill's version, and the config schema's file as
    :func:`taskmill.config.load_config`'s stamp names it (a changed schema checks the
    config again); ``None`` when the schema cannot be found."""
    try:
        schema = os.stat(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "config_schema.py"))
    except OSError:
        return None
    return (f"taskmill-lean {FORMAT} {version} {schema.st_size} {schema.st_mtime_ns}\n"
            .encode())


def render(config_bytes: bytes, *, beads_compat: bool, version: str,
           prefix: str | None = None) -> bytes | None:
    """The cache's content for a checked config file (``config_bytes``; ``prefix``: the
    ledger's id prefix, for the lean ``create``)."""
    header = _header(version)
    if header is None:
        return None
    settings = f"beads_compat {int(beads_compat)}\n"
    if prefix is not None and prefix.isprintable() and prefix.strip() == prefix:
        settings += f"prefix {prefix}\n"  # (else a lean create leaves it to the full path)
    return header + f"{settings}\n".encode() + config_bytes


def write(run_dir: str, config_bytes: bytes, *, beads_compat: bool,
          prefix: str | None = None) -> None:
    """Keep the cache for ``config_bytes`` (written only when it changed; best effort: a
    cache that cannot be written just leaves the lean path unused)."""
    from . import __version__

    data = render(config_bytes, beads_compat=beads_compat, version=__version__, prefix=prefix)
    if data is None:
        return
    path = os.path.join(run_dir, CACHE_FILE)
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(run_dir, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read(run_dir: str, config_path: str) -> dict[str, str] | None:
    """The settings cached for the config file at ``config_path`` as it is now, or ``None``
    (no cache, another config, another version of taskmill, unreadable)."""
    from . import __version__

    try:
        with open(os.path.join(run_dir, CACHE_FILE), "rb") as f:
            data = f.read()
        with open(config_path, "rb") as f:
            config = f.read()
    except OSError:
        return None
    head, sep, body = data.partition(b"\n\n")
    if not sep or body != config:
        return None
    first, _, rest = head.partition(b"\n")
    header = _header(__version__)
    if header is None or first + b"\n" != header:
        return None
    settings: dict[str, str] = {}
    for line in rest.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        settings[key] = value
    return settings
