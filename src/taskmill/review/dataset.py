"""Build a labelled review dataset from a repository's own history, by mutation.

Each case is a real commit's diff (its Python files). A share of them get one known bug
injected into a line the commit added, and are labelled with that line; the others are kept
as they are, as negatives (no labelled bug). The mutations are the bugs reviewers are for:

* ``inverted_condition`` (blocker): ``==``/``!=``, ``<``/``>=``, ``>``/``<=``, ``is``/``is not``,
  ``in``/``not in``, or ``if X:`` -> ``if not X:``;
* ``off_by_one`` (major): an integer literal ``n`` -> ``n + 1`` (in a comparison, a slice, a
  ``range``, or arithmetic);
* ``dropped_check`` (major): an added ``if ...:`` whose body is one ``raise`` / ``return`` /
  ``continue`` line is removed (labelled at the line that now follows it);
* ``wrong_variable`` (blocker): a name on the line is replaced by another name the same hunk
  uses.

The result is JSON lines, one case each::

    {"id": "humanize-823ad60", "repo": "...", "commit": "823ad60...", "title": "...",
     "diff": "diff --git ...", "bugs": [{"file": "src/humanize/filesize.py", "line": 88,
     "kind": "off_by_one", "severity": "major", "original": "...", "mutated": "..."}]}

The shipped ``datasets/humanize.jsonl`` was made from python-humanize's history with::

    python -m taskmill.review.dataset /path/to/humanize --name humanize --cases 40 \\
        --out src/taskmill/review/datasets/humanize.jsonl

Point it at your own repository (``--paths`` to choose the files, ``--cases`` for more) to
measure a reviewer on code like yours: ``taskmill review eval FILE``. Deterministic: the
same repository, options and ``--seed`` give the same file.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEVERITY = {"inverted_condition": "blocker", "wrong_variable": "blocker",
            "off_by_one": "major", "dropped_check": "major"}
MAX_DIFF = 12_000
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_SWAPS = [(" == ", " != "), (" != ", " == "), (" >= ", " < "), (" <= ", " > "),
          (" < ", " >= "), (" > ", " <= "), (" is not ", " is "), (" is ", " is not "),
          (" not in ", " in "), (" in ", " not in ")]
_INT = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
_NAME = re.compile(r"\b[a-z_][a-z0-9_]*\b")
_KEYWORDS = {"if", "else", "elif", "for", "while", "in", "not", "and", "or", "is", "return",
             "def", "class", "import", "from", "as", "with", "try", "except", "raise", "none",
             "true", "false", "self", "lambda", "pass", "yield", "assert", "del", "global",
             "print", "len", "str", "int", "float", "list", "dict", "set", "tuple", "range"}


@dataclass
class Line:
    index: int
    """Index in the diff's lines."""
    file: str
    new_line: int
    """Line number in the file after the change."""
    text: str
    """Without the leading ``+``."""
    hunk: int


def added_lines(diff: str) -> list[Line]:
    """The ``+`` lines of Python files, with their line numbers in the new file."""
    found: list[Line] = []
    file = ""
    new_no = 0
    hunk = -1
    for i, line in enumerate(diff.splitlines()):
        if line.startswith("+++ "):
            file = line[6:] if line.startswith("+++ b/") else ""
        elif m := _HUNK.match(line):
            new_no, hunk = int(m.group(1)), hunk + 1
        elif line.startswith("+") and file.endswith(".py"):
            found.append(Line(i, file, new_no, line[1:], hunk))
            new_no += 1
        elif line.startswith(" "):
            new_no += 1
    return found


_CODEY = re.compile(r"^\s*(return\b|if |elif |while |for |[a-z_][\w.]*(\[[^]]*\])?\s*"
                    r"([-+*/]?=[^=]|\()|[a-z_][\w.]*\s*,)")
_QUOTES = ('"' * 3, "'" * 3)


def _is_code(text: str) -> bool:
    """Looks like a statement (not prose in a docstring, not a doctest)."""
    stripped = text.strip()
    return (bool(_CODEY.match(text)) and not stripped.startswith((">>>", "..."))
            and not stripped.endswith(".") and not any(q in stripped for q in _QUOTES))


def _code(text: str) -> str:
    """The line with its comment and the contents of its strings blanked out (same length:
    positions in it are positions in the line)."""
    hash_at = text.find("#")
    body = text if hash_at < 0 else text[:hash_at] + " " * (len(text) - hash_at)
    return re.sub(r"(\"[^\"]*\"|'[^']*')",
                  lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[0], body)


def _variables(text: str) -> list[re.Match[str]]:
    """Names on a line that are variables: not keywords, calls, attributes or string
    prefixes."""
    code = _code(text)
    return [m for m in _NAME.finditer(code) if m.group(0) not in _KEYWORDS
            and code[m.end():m.end() + 1] not in ("(", "'", '"')
            and code[m.start() - 1:m.start()] != "."]


def _try_mutation(kind: str, line: Line, lines: list[Line], rng: random.Random,
                  diff_lines: list[str]) -> tuple[list[str], int, str] | None:
    """``(new diff lines, labelled new line, mutated text)`` or None when it does not apply."""
    text, code = line.text, _code(line.text)
    stripped = text.strip()
    if not stripped or stripped.startswith(("#", "def ", "class ", "@", "import ", "from ")) \
            or not _is_code(text):
        return None
    mutated: str | None = None
    if kind == "inverted_condition":
        for before, after_op in _SWAPS:
            if before.strip() in ("in", "not in") and "for " in code:
                continue  # `for x in` is no condition
            at = code.find(before)
            if at >= 0:
                mutated = text[:at] + after_op + text[at + len(before):]
                break
        else:
            m = re.match(r"^(\s*)(if|elif|while) (.+):\s*$", text)
            if m and not m.group(3).startswith("not ") and "TYPE_CHECKING" not in code:
                mutated = f"{m.group(1)}{m.group(2)} not ({m.group(3)}):"
    elif kind == "off_by_one":
        ints = [m for m in _INT.finditer(code) if len(m.group(1)) < 6]
        if ints and not stripped.startswith(("return '", 'return "')):
            m = rng.choice(ints)
            mutated = text[:m.start()] + str(int(m.group(1)) + 1) + text[m.end():]
    elif kind == "wrong_variable":
        names = _variables(text)
        others = sorted({m.group(0) for other in lines if other.hunk == line.hunk
                         and _is_code(other.text) for m in _variables(other.text)}
                        - {m.group(0) for m in names})
        if names and others:
            m = rng.choice(names)
            mutated = text[:m.start()] + rng.choice(others) + text[m.end():]
    elif kind == "dropped_check":
        m = re.match(r"^(\s*)if .+:\s*$", text)
        after = [other for other in lines if other.index == line.index + 1]
        rest = [o for o in lines if o.hunk == line.hunk and o.index not in
                (line.index, line.index + 1) and o.text.strip()]
        if m and after and rest \
                and after[0].text.strip().startswith(("raise", "return", "continue")) \
                and len(after[0].text) - len(after[0].text.lstrip()) > len(m.group(1)):
            shorter = diff_lines[:line.index] + diff_lines[line.index + 2:]
            _shrink_hunk(shorter, line.index, 2)
            return shorter, line.new_line, ""
        return None
    if mutated is None or mutated == text:
        return None
    changed = list(diff_lines)
    changed[line.index] = "+" + mutated
    return changed, line.new_line, mutated


def _shrink_hunk(lines: list[str], index: int, by: int) -> None:
    """Fix the ``+count`` of the hunk header above ``index`` after ``by`` ``+`` lines went."""
    for i in range(index - 1, -1, -1):
        m = _HUNK.match(lines[i])
        if m:
            count = int(m.group(2) if m.group(2) is not None else 1) - by
            old = f"+{m.group(1)}" + (f",{m.group(2)}" if m.group(2) is not None else "")
            head = m.group(0)
            lines[i] = head.replace(old, f"+{m.group(1)},{count}") + lines[i][len(head):]
            return


def mutate(case_id: str, diff: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The diff with one bug injected, and its label (None: nothing in it can be mutated)."""
    lines = added_lines(diff)
    diff_lines = diff.splitlines()
    kinds = list(SEVERITY)
    rng.shuffle(kinds)
    for kind in kinds:
        candidates = list(lines)
        rng.shuffle(candidates)
        for line in candidates:
            done = _try_mutation(kind, line, lines, rng, diff_lines)
            if done is not None:
                new_lines, at, mutated = done
                return "\n".join(new_lines) + "\n", {
                    "file": line.file, "line": at, "kind": kind, "severity": SEVERITY[kind],
                    "original": line.text, "mutated": mutated}
    return None


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def build(repo: Path, *, name: str, cases: int, paths: Sequence[str], seed: int,
          mutated_share: float = 0.5) -> list[dict[str, Any]]:
    """Up to ``cases`` cases from the newest non-merge commits touching ``paths``."""
    rng = random.Random(seed)
    remote = _git(repo, "config", "--get", "remote.origin.url").strip() if _git(
        repo, "remote").strip() else str(repo)
    out: list[dict[str, Any]] = []
    commits = _git(repo, "log", "--no-merges", "--format=%H", "--", *paths).split()
    for sha in commits:
        if len(out) >= cases:
            break
        diff = _git(repo, "show", "--format=", "--no-color", "--no-ext-diff", "-U3", sha, "--",
                    *paths)
        if not diff.strip() or len(diff) > MAX_DIFF or not added_lines(diff):
            continue
        title = _git(repo, "log", "-1", "--format=%s", sha).strip()
        case: dict[str, Any] = {"id": f"{name}-{sha[:7]}", "repo": remote, "commit": sha,
                                "title": title, "diff": diff, "bugs": []}
        if sum(1 for c in out if c["bugs"]) < mutated_share * (len(out) + 1):
            done = mutate(case["id"], diff, rng)
            if done is None:
                continue
            case["id"] += "-m"
            case["diff"], label = done
            case["bugs"] = [label]
        out.append(case)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a git repository")
    parser.add_argument("--out", type=Path, required=True, help="the JSON lines file to write")
    parser.add_argument("--name", default="", help="case id prefix (default: the repo's name)")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--paths", nargs="*", default=["*.py"],
                        help="pathspecs of the files to take (default: *.py)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--mutated-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    built = build(args.repo, name=args.name or args.repo.resolve().name, cases=args.cases,
                  paths=args.paths, seed=args.seed, mutated_share=args.mutated_share)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for case in built:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    mutated = sum(1 for c in built if c["bugs"])
    print(f"{len(built)} cases ({mutated} with an injected bug) -> {args.out}")


if __name__ == "__main__":
    main()
