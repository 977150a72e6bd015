"""A ``taskmill worker`` runs every turn with the services and rules of the local mill: a
person's approval before landing (``[merge]``), the review gate (``[review]``), roles, the
capability socket (the agent's only way to the ledger) and the model proxy. A real Temporal
dev server, ``taskmill worker`` processes with their own clones, scripted agents (the same
scenarios as the local tests: test_review_approval, test_review_mill, test_roles_mill,
test_authority, test_proxy)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import agent_script
from taskmill.review.approval import approval_state
from taskmill.testing.fake_model import FakeModelServer
from temporal_helpers import Cluster, events_of

WRITE_FILE = """
(WT / f"{TASK}.txt").write_text(f"{TASK} iteration {ITER}\\n")
"""


@pytest.fixture
def cluster(tmp_path: Path, temporal_server: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, temporal_server, checks=["true"])
    yield c
    c.stop()


def configure(cluster: Cluster, toml: str, files: dict[str, str] | None = None) -> None:
    """Add ``toml`` to the committed config (and ``files``), pushed to the shared remote
    before the workers clone it."""
    repo = cluster.repo
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n" + toml, encoding="utf-8")
    for name, text in (files or {}).items():
        path = repo.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "configure")
    repo.git("push", "-q", "origin", "main")


def exec_agent(name: str, command: str) -> str:
    return f'[agents.{name}]\nadapter = "exec"\ncommand = {json.dumps([command])}\n'


def turns(cluster: Cluster, task: str) -> int:
    return len(list(cluster.repo.spy.glob(f"prompt-{task}-*.stdin")))


# -- (a) approval ----------------------------------------------------------------------------


def test_require_approval_holds_the_landing_until_a_person_approves(cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    configure(cluster, exec_agent("worker", agent) + "\n[merge]\nrequire_approval = true\n")
    repo.create("tm-a")
    cluster.start_worker(1)

    result = cluster.run("--agent", "worker")

    assert repo.task("tm-a")["status"] == "blocked", result.describe() + cluster.log(1)
    state = approval_state(repo.ledger, "tm-a")
    assert state is not None and state.status == "awaiting", state
    assert cluster.remote_landings() == {}  # nothing landed without a person
    assert '"awaiting_approval"' in cluster.log(1)

    approved = repo.cli("approve", "tm-a")
    assert approved.returncode == 0, approved.stderr
    calls = turns(cluster, "tm-a")

    result = cluster.run("--agent", "worker")

    assert result.returncode == 0, result.describe() + cluster.log(1)
    assert repo.task("tm-a")["status"] == "closed"
    assert {k: len(v) for k, v in cluster.remote_landings().items()} == {"tm-a": 1}
    assert turns(cluster, "tm-a") == calls  # landed as approved: no new agent turn
    kinds = [e.kind for e in repo.ledger.events("tm-a")]
    assert kinds.index("approval_requested") < kinds.index("approved")
    repo.verify_ok()


# -- (b) the review gate ----------------------------------------------------------------------

BAD = "def add(a, b):\n    return a - b\n"
GOOD = "def add(a, b):\n    return a + b\n"
CODER = """
(WT / "calc.py").write_text({bad!r} if ITER == 1 else {good!r})
"""
REVIEWER = """
diff = PROMPT.split("## The diff against the target", 1)[1].split("## How to answer", 1)[0]
found = []
if "return a - b" in diff:
    found.append({"file": "calc.py", "line_start": 2, "line_end": 2, "severity": "blocker",
                  "confidence": 0.9, "title": "add subtracts",
                  "explanation": "add returns a - b", "suggested_fix": "return a + b"})
print(json.dumps({"findings": found}))
"""


def test_the_review_gate_sends_a_blocked_change_back(cluster: Cluster) -> None:
    repo = cluster.repo
    coder = agent_script(cluster.tmp / "coder.py", CODER.format(bad=BAD, good=GOOD),
                         spy=repo.spy)
    reviewer = agent_script(cluster.tmp / "reviewer.py", REVIEWER, spy=cluster.tmp / "rspy")
    configure(cluster, exec_agent("worker", coder) + exec_agent("reviewer", reviewer)
              + '\n[review]\nblock_at = { severity = "major", confidence = 0.5 }\n')
    repo.create("tm-a", "add calc.add", checks=["python -c 'import calc'"])
    cluster.start_worker(1)

    result = cluster.run("--agent", "worker")

    assert result.returncode == 0, result.describe() + cluster.log(1)
    attempts = repo.attempts("tm-a")
    assert [a["outcome"] for a in attempts] == ["failed", "passed"], attempts
    assert attempts[0]["detail"]["failure_kind"] == "review"
    assert attempts[0]["detail"]["review"]["blocking"]
    (landed,) = cluster.remote_landings()["tm-a"]
    assert repo.git("show", f"{landed}:calc.py") == GOOD
    second = (repo.spy / "prompt-tm-a-2.stdin").read_text()
    assert "## The reviewer found problems in your change" in second
    kinds = [e.kind for e in repo.ledger.events("tm-a")]
    assert kinds.count("review_finished") == 2
    repo.verify_ok()


# -- (c) roles --------------------------------------------------------------------------------


def test_a_role_s_prompt_applies_and_a_role_that_does_not_land_is_not_landed(
        cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", """
(WT / "review.md").write_text("looks good\\n")
""", spy=repo.spy)
    configure(cluster, "", files={
        ".taskmill/roles/checker.toml": 'land = false\nprompt = "prompts/checker.md"\n'
                                        'checks = ["test -f review.md"]\n',
        ".taskmill/prompts/checker.md": "Check {{ task.title }} as the {{ role.name }}.\n"})
    repo.ledger.create("the change", task_id="tm-r", role="checker")

    cluster.start_worker(1)
    result = cluster.run("--agent-cmd", agent)

    assert result.returncode == 0, result.describe() + cluster.log(1)
    task = repo.task("tm-r")
    assert task["status"] == "closed", task
    assert task["close_reason"].startswith("checked, not landed (role 'checker' does not land)")
    assert cluster.remote_landings() == {}  # nothing merged on the remote
    prompt = (repo.spy / "prompt-tm-r-1.stdin").read_text()
    assert "## Your role: checker" in prompt and "Check the change as the checker." in prompt
    # the work stays on its branch, on the shared remote
    assert repo.git("--git-dir", str(cluster.origin), "show",
                    "taskmill/tm-r:review.md") == "looks good\n"


def test_a_role_s_max_parallel_holds_on_the_temporal_executor(cluster: Cluster) -> None:
    """Three tasks of a role with ``max_parallel = 1``, two slots and ``--workers 2``: the
    client never has two of them in flight (it counts the roles it dispatched, as the local
    mill does)."""
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    configure(cluster, "", files={".taskmill/roles/solo.toml": "max_parallel = 1\n"})
    for n in range(3):
        repo.ledger.create(f"solo {n}", task_id=f"tm-s{n}", role="solo")

    cluster.start_worker(1, slots=2)
    result = cluster.run("--agent-cmd", agent, "--workers", "2")

    assert result.returncode == 0, result.describe() + cluster.log(1)
    dispatched = events_of(result, "dispatched")
    assert sorted(e["task"] for e in dispatched) == ["tm-s0", "tm-s1", "tm-s2"]
    assert all(e["in_flight"] == 1 for e in dispatched), dispatched
    assert sorted(cluster.remote_landings()) == ["tm-s0", "tm-s1", "tm-s2"]


# -- (d) the capability socket ----------------------------------------------------------------

REFUSED = "not allowed inside a taskmill turn"
LEDGER_AGENT = """
def tm(*args):
    proc = subprocess.run([sys.executable, "-m", "taskmill", *args], capture_output=True,
                          text=True, cwd=WT)
    return [proc.returncode, proc.stdout, proc.stderr]


results = {"comment": tm("comment", TASK, "noted by the agent"),
           "close": tm("close", "tm-b"), "update": tm("update", "tm-b", "--check", "evil")}
save("results.json", json.dumps(results))
(WT / f"{TASK}.txt").write_text("honest work\\n")
"""


def test_an_agent_on_a_worker_reaches_the_ledger_only_through_its_capability_socket(
        cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", LEDGER_AGENT, spy=repo.spy)
    repo.create("tm-a")
    repo.create("tm-b", "someone else's task")
    cluster.start_worker(1)

    result = cluster.run("--agent-cmd", agent, "--only", "tm-a")

    assert result.returncode == 0, result.describe() + cluster.log(1)
    env = json.loads((repo.spy / "env-tm-a-1.json").read_text())
    assert "TASKMILL_SOCKET" in env, env
    assert "TASKMILL_DIR" not in env and "TASKMILL_DATABASE_URL" not in env, env
    socket_path = Path(env["TASKMILL_SOCKET"])
    assert socket_path.is_relative_to(cluster.tmp / "worker1"), socket_path
    assert not socket_path.exists()  # gone with the turn
    results = json.loads((repo.spy / "results.json").read_text())
    assert results["comment"][0] == 0, results
    for name in ("close", "update"):
        assert results[name][0] != 0 and REFUSED in results[name][2], results
    comments = repo.task("tm-a")["comments"]
    assert [(c["author"], c["text"]) for c in comments] == [
        ("agent:cmd/tm-a", "noted by the agent")]
    other = repo.task("tm-b")
    assert other["status"] == "open" and other["checks"] is None
    refusals = [e for e in repo.ledger.events("tm-a") if e.kind == "capability_refused"]
    assert sorted(e.data["op"] for e in refusals) == ["close", "update"]
    assert {e.actor for e in refusals} == {"agent:cmd/tm-a"}
    assert cluster.log(1).count('"capability_refused"') == 2
    assert {k: len(v) for k, v in cluster.remote_landings().items()} == {"tm-a": 1}
    repo.verify_ok()
    # the run's socket directory lives as long as the worker; it is gone when it stops
    cap = cluster.tmp / "worker1" / "clone" / ".taskmill" / "run" / "cap"
    (started,) = events_of(result, "run_started")
    assert [p.name for p in cap.iterdir()] == [started["run_id"]]
    cluster.stop()
    assert list(cap.iterdir()) == []


# -- (e) the model proxy ----------------------------------------------------------------------

KEY_ENV = "TM_PROXY_TEST_KEY"
REAL_KEY = "sk-real-key-0b1d2c3e"
PROXY_AGENT = r'''
import urllib.request
base = os.environ["TASKMILL_BASE_URL"]
key = os.environ["{key_env}"]
save("env.json", json.dumps(dict(os.environ)))
for _ in range(2):
    req = urllib.request.Request(
        base + "/v1/messages", method="POST",
        data=json.dumps({{"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": True,
                         "messages": [{{"role": "user", "content": "hi"}}]}}).encode(),
        headers={{"x-api-key": key, "content-type": "application/json"}})
    with urllib.request.urlopen(req, timeout=30) as answer:
        answer.read()
(WT / "done.txt").write_text("done\n")
usage(input_tokens=987654321, output_tokens=-5, cost_usd=123.0)
'''


def fp(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def side(input_tokens: int, output_tokens: int, **cache: int) -> dict[str, Any]:
    return {"side": {"text": "Hello from the fake model.",
                     "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                               **cache}},
            "models": ["claude-sonnet-4-5"]}


def test_worker_turns_go_through_the_model_proxy_which_counts_them(cluster: Cluster) -> None:
    repo = cluster.repo
    with FakeModelServer(side(1000, 40, cache_read_tokens=200)) as fake:
        bot = agent_script(cluster.tmp / "bot.py", PROXY_AGENT.format(key_env=KEY_ENV),
                           spy=cluster.tmp / "spy")
        configure(cluster, exec_agent("bot", bot) + f'base_url = "{fake.url}"\n'
                  f'api_key_env = "{KEY_ENV}"\nproxy_api = "anthropic"\n'
                  f'pass_env = ["{KEY_ENV}"]\n')
        repo.create("tm-1")
        cluster.env = {**cluster.env, KEY_ENV: REAL_KEY}  # the worker machine's secret
        cluster.start_worker(1)
        result = cluster.run("--agent", "bot")
        logged = fake.requests
    assert result.returncode == 0, result.describe() + cluster.log(1)
    assert {k: len(v) for k, v in cluster.remote_landings().items()} == {"tm-1": 1}
    (attempt,) = repo.attempts("tm-1")
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (2000, 80), attempt
    assert attempt["detail"]["usage_source"] == "proxy"
    assert attempt["detail"]["proxy"]["requests"] == 2
    # the key: at the model server, never in the agent's environment
    assert [e["credentials"] for e in logged] == [{"x-api-key": fp(REAL_KEY)}] * 2
    env = json.loads((cluster.tmp / "spy" / "env.json").read_text())
    assert REAL_KEY not in json.dumps(env) and env[KEY_ENV] == "taskmill-proxy"
    assert '"proxy_started"' in cluster.log(1)
    run_dir = cluster.tmp / "worker1" / "clone" / ".taskmill" / "run"
    assert len(list(run_dir.glob("proxy-*.sock"))) == 1
    cluster.stop()  # the worker stops: so does its proxy
    assert list(run_dir.glob("proxy-*.sock")) == []


# -- (f) what a worker runs ------------------------------------------------------------------


def test_a_worker_runs_an_agent_cmd_only_when_started_with_allow_agent_cmd(
        cluster: Cluster) -> None:
    """A command given with ``taskmill run --agent-cmd`` travels in the workflow's input: a
    worker not started with ``--allow-agent-cmd`` refuses it (the task ends in error, saying
    so, and the command never runs); an agent of the committed config runs there."""
    repo = cluster.repo
    marker = cluster.tmp / "ran"
    agent = agent_script(cluster.tmp / "agent.py", f"""
open({str(marker)!r}, "a").write(TASK + "\\n")
(WT / f"{{TASK}}.txt").write_text(f"{{TASK}} iteration {{ITER}}\\n")
""", spy=repo.spy)
    repo.ledger.create("one", task_id="tm-a")

    cluster.start_worker(1, allow_agent_cmd=False)
    refused = cluster.run("--agent-cmd", agent)
    assert refused.returncode != 0, refused.describe()
    assert "start it with `taskmill worker --allow-agent-cmd`" in " ".join(refused.stdout.split())
    assert not marker.exists()  # the command never ran
    assert cluster.remote_landings() == {}

    configure(cluster, exec_agent("committed", agent))
    cluster.stop()
    cluster.start_worker(2, allow_agent_cmd=False)  # a fresh clone, with the new config
    landed = cluster.run("--agent", "committed", "--only", "tm-a")
    assert landed.returncode == 0, landed.describe() + cluster.log(2)
    assert repo.task("tm-a")["status"] == "closed"
    assert marker.read_text() == "tm-a\n"
