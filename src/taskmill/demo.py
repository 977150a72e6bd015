"""``make demo``: the whole flow in under a minute, with the scripted agent.

Creates ``demo/textkit`` (a small Python package in a fresh git repository), imports a
plan of a dozen dependent tasks, and runs the mill on it with the *scripted* test-double
agent: some tasks need several iterations before their checks pass, two of them edit the
same line and conflict in the merge queue, and everything lands on ``main``. Then it shows
the ledger, the audit trail check, and how to run taskmill on your own repository with a
real agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PY = sys.executable
UNITTEST = f'"{PY}" -m unittest -q'

CHANGELOG = "# Changelog\n\n## Unreleased\n\n- nothing yet\n\n\n\n## 0.0.0\n\n- empty package\n"


def _module(name: str, body: str) -> str:
    return textwrap.dedent(body).lstrip()


FILES: dict[str, str] = {
    "init": '"""textkit: small text helpers."""\n',
    "slug_bad": _module("slug", '''
        def slugify(text: str) -> str:
            return text.lower().replace(" ", "-")
        '''),
    "slug": _module("slug", '''
        import re


        def slugify(text: str) -> str:
            words = re.findall(r"[a-z0-9]+", text.lower())
            return "-".join(words)
        '''),
    "test_slug": _module("t", '''
        import unittest

        from textkit.slug import slugify


        class SlugTest(unittest.TestCase):
            def test_punctuation(self) -> None:
                self.assertEqual(slugify("Hello, World!"), "hello-world")
        '''),
    "count": _module("count", '''
        def word_count(text: str) -> int:
            return len(text.split())
        '''),
    "test_count": _module("t", '''
        import unittest

        from textkit.count import word_count


        class CountTest(unittest.TestCase):
            def test_count(self) -> None:
                self.assertEqual(word_count("a b  c"), 3)
        '''),
    "title": _module("title", '''
        SMALL = {"a", "an", "and", "of", "the"}


        def title_case(text: str) -> str:
            words = text.lower().split()
            return " ".join(w if i and w in SMALL else w.capitalize() for i, w in enumerate(words))
        '''),
    "test_title": _module("t", '''
        import unittest

        from textkit.title import title_case


        class TitleTest(unittest.TestCase):
            def test_small_words(self) -> None:
                self.assertEqual(title_case("the lord of the rings"), "The Lord of the Rings")
        '''),
    "truncate": _module("truncate", '''
        def truncate(text: str, width: int) -> str:
            return text if len(text) <= width else text[: max(0, width - 1)] + "…"
        '''),
    "test_truncate": _module("t", '''
        import unittest

        from textkit.truncate import truncate


        class TruncateTest(unittest.TestCase):
            def test_short(self) -> None:
                self.assertEqual(truncate("abcdef", 4), "abc…")
        '''),
    "wrap_bad": _module("wrap", '''
        def wrap(text: str, width: int) -> list[str]:
            return [text[i : i + width] for i in range(0, len(text), width)]
        '''),
    "wrap": _module("wrap", '''
        import textwrap


        def wrap(text: str, width: int) -> list[str]:
            return textwrap.wrap(text, width)
        '''),
    "test_wrap": _module("t", '''
        import unittest

        from textkit.wrap import wrap


        class WrapTest(unittest.TestCase):
            def test_words_kept_whole(self) -> None:
                self.assertEqual(wrap("hello big world", 9), ["hello big", "world"])
        '''),
    "reverse": _module("reverse", '''
        def reverse_words(text: str) -> str:
            return " ".join(reversed(text.split()))
        '''),
    "test_reverse": _module("t", '''
        import unittest

        from textkit.reverse import reverse_words


        class ReverseTest(unittest.TestCase):
            def test_reverse(self) -> None:
                self.assertEqual(reverse_words("one two three"), "three two one")
        '''),
    "version": '__version__ = "0.1.0"\n',
    "cli": _module("cli", '''
        import sys

        from textkit.count import word_count
        from textkit.slug import slugify
        from textkit.title import title_case

        COMMANDS = {"slug": slugify, "count": word_count, "title": title_case}


        def main(argv: list[str]) -> None:
            command, text = argv[0], " ".join(argv[1:])
            print(COMMANDS[command](text))


        if __name__ == "__main__":
            main(sys.argv[1:])
        '''),
    "test_cli": _module("t", '''
        import subprocess
        import sys
        import unittest


        class CliTest(unittest.TestCase):
            def test_slug(self) -> None:
                out = subprocess.run([sys.executable, "-m", "textkit.cli", "slug", "A B"],
                                     capture_output=True, text=True, check=True).stdout
                self.assertEqual(out.strip(), "a-b")
        '''),
}


def _changelog(*added: str) -> str:
    lines = "\n".join(f"- added {name}" for name in added) or "- nothing yet"
    return CHANGELOG.replace("- nothing yet", lines)


def plan() -> str:
    """The backlog: a dozen tasks with dependencies, as a taskmill plan file."""
    tasks: list[dict[str, Any]] = [
        {"key": "setup", "title": "Set up the textkit package", "priority": 0,
         "checks": [f'"{PY}" -c "import textkit"']},
        {"key": "slug", "title": "Add slugify", "after": ["setup"],
         "description": "slugify(text) keeps letters and digits, joined by '-'.",
         "checks": [f"{UNITTEST} tests.test_slug"]},
        {"key": "count", "title": "Add word count", "after": ["setup"],
         "checks": [f"{UNITTEST} tests.test_count"]},
        {"key": "title", "title": "Add title case", "after": ["setup"],
         "checks": [f"{UNITTEST} tests.test_title"]},
        {"key": "truncate", "title": "Add truncate", "after": ["setup"],
         "checks": [f"{UNITTEST} tests.test_truncate"]},
        {"key": "wrap", "title": "Add wrap", "after": ["truncate"],
         "checks": [f"{UNITTEST} tests.test_wrap"]},
        {"key": "reverse", "title": "Add reverse words", "after": ["setup"], "priority": 3,
         "checks": [f"{UNITTEST} tests.test_reverse"]},
        {"key": "version", "title": "Add a version number", "after": ["setup"], "priority": 3,
         "checks": [f'"{PY}" -c "import textkit.version as v; assert v.__version__"']},
        {"key": "cli", "title": "Add the command line", "after": ["slug", "count", "title"],
         "checks": [f"{UNITTEST} tests.test_cli"]},
        {"key": "readme", "title": "Document the command line in the README", "after": ["cli"],
         "checks": ["grep -q 'python -m textkit.cli' README.md"]},
        {"key": "all", "title": "Run every test together", "after": ["wrap", "cli", "reverse"],
         "checks": [f'"{PY}" -m unittest discover -q -s tests -t .']},
        {"key": "release", "title": "Write the release notes for 0.1",
         "after": ["all", "readme", "version"], "priority": 1,
         "checks": ["grep -q '## 0.1.0' CHANGELOG.md"]},
    ]
    out = ['[defaults]\nlabels = ["demo"]\n']
    for task in tasks:
        out.append("[[task]]")
        for key, value in task.items():
            out.append(f"{key} = {json.dumps(value)}")
        out.append("")
    return "\n".join(out)


def script() -> dict[str, Any]:
    """What the scripted agent does for each task, turn by turn."""
    use = {"input_tokens": 1800, "output_tokens": 350, "cost_usd": 0.0042}
    count_log = _changelog("word count")
    title_log = _changelog("title case")
    both_logs = _changelog("word count", "title case")

    def turn(files: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"files": files, "usage": use, **extra}

    return {"tasks": {
        "Set up the textkit package": turn({"textkit/__init__.py": FILES["init"],
                                            "tests/__init__.py": ""}),
        # two iterations: the first version fails its test, the second passes
        "Add slugify": [turn({"textkit/slug.py": FILES["slug_bad"],
                              "tests/test_slug.py": FILES["test_slug"]}),
                        turn({"textkit/slug.py": FILES["slug"]})],
        # these two edit the same CHANGELOG line: whichever lands second hits a conflict in
        # the merge queue and resolves it in its next turn
        "Add word count": [turn({"textkit/count.py": FILES["count"],
                                 "tests/test_count.py": FILES["test_count"],
                                 "CHANGELOG.md": count_log}),
                           turn({"CHANGELOG.md": both_logs})],
        "Add title case": [turn({"textkit/title.py": FILES["title"],
                                 "tests/test_title.py": FILES["test_title"],
                                 "CHANGELOG.md": title_log}),
                           turn({"CHANGELOG.md": both_logs})],
        # forgets the test file first, so the check fails; adds it on the second turn
        "Add truncate": [turn({"textkit/truncate.py": FILES["truncate"]}),
                         turn({"tests/test_truncate.py": FILES["test_truncate"]})],
        # three iterations
        "Add wrap": [turn({"textkit/wrap.py": FILES["wrap_bad"]}),
                     turn({"tests/test_wrap.py": FILES["test_wrap"]}),
                     turn({"textkit/wrap.py": FILES["wrap"]})],
        "Add reverse words": turn({"textkit/reverse.py": FILES["reverse"],
                                   "tests/test_reverse.py": FILES["test_reverse"]}),
        "Add a version number": turn({"textkit/version.py": FILES["version"]}),
        "Add the command line": turn({"textkit/cli.py": FILES["cli"],
                                      "tests/test_cli.py": FILES["test_cli"]}, commit=True),
        "Document the command line": turn({"README.md": "# textkit\n\nSmall text helpers.\n\n"
                                           "    python -m textkit.cli slug 'Hello World'\n"}),
        "Run every test together": turn({}),
        "Write the release notes": turn({}, append={"CHANGELOG.md": "\n## 0.1.0\n\n- first release\n"}),
    }}


def sh(cmd: list[str], cwd: Path, env: dict[str, str], *, show: bool = True,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    if show:
        print(f"\n$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, check=False,
                          stdout=None if show else subprocess.PIPE)
    if check and proc.returncode not in (0,):
        raise SystemExit(f"demo step failed ({proc.returncode}): {' '.join(cmd)}")
    return proc


def main() -> None:
    root = Path.cwd() / "demo"
    repo = root / "textkit"
    if root.exists():
        shutil.rmtree(root)
    repo.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com",
           "TASKMILL_ACTOR": "demo-user"}
    tm = [PY, "-m", "taskmill"]
    (repo / "README.md").write_text("# textkit\n\nSmall text helpers.\n")
    (repo / "CHANGELOG.md").write_text(CHANGELOG)
    (repo / ".gitignore").write_text("__pycache__/\n")
    sh(["git", "init", "-q", "-b", "main"], repo, env, show=False)
    sh(["git", "add", "-A"], repo, env, show=False)
    sh(["git", "commit", "-q", "-m", "textkit: empty package"], repo, env, show=False)
    print(f"A sample repository: {repo}")

    sh([*tm, "init", "--prefix", "tk"], repo, env)
    script_path = root / "agent-script.json"
    script_path.write_text(json.dumps(script(), indent=2))
    config = repo / ".taskmill" / "config.toml"
    config.write_text(config.read_text().replace(
        "commands = []", f'commands = [\'"{PY}" -m compileall -q textkit\']').replace(
        '# agent = "claude"', 'agent = "scripted"') + textwrap.dedent(f"""
        # The scripted agent is a test double that ships with taskmill: it plays back
        # {script_path.name} instead of calling a model.
        [agents.scripted]
        adapter = "scripted"
        script = "{script_path}"
        """))
    (repo / "plan.toml").write_text(plan())
    sh([*tm, "import", "plan.toml"], repo, env)
    sh([*tm, "ready"], repo, env)
    sh([*tm, "blocked"], repo, env)
    sh([*tm, "run", "--workers", "3"], repo, env, check=False)
    sh(["git", "log", "--oneline", "--graph", "main"], repo, env)
    sh([*tm, "stats"], repo, env)
    sh([*tm, "verify"], repo, env)
    print(textwrap.dedent(f"""
        That was the whole flow: a backlog with dependencies, agents in parallel worktrees,
        checks run by taskmill (not the agent's word), retries with the failure in the next
        prompt, a merge queue that caught a conflict and sent it back, and an audit trail.
        Look around: cd {repo} && taskmill list && taskmill show <id> && taskmill log
        (taskmill is installed in {Path(PY).parent}; `source {Path(PY).parent}/activate` puts
        it on your PATH.)

        On your own repository, with a real agent:
            cd your-repo && taskmill init
            taskmill create "Fix the flaky date parser" --check "pytest -q tests/test_dates.py"
            # in .taskmill/config.toml:  [run] agent = "claude"
            #                            [agents.claude] adapter = "claude"
            #                                            pass_env = ["ANTHROPIC_API_KEY"]
            taskmill run
        Or any command as the agent:  taskmill run --agent-cmd "./my-agent.sh"
        """))


if __name__ == "__main__":
    main()
