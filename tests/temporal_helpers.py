"""Helpers for the Temporal executor's end-to-end tests: a shared remote, the user's checkout
(holding the ledger), and ``taskmill worker`` processes, each with its own clone in its own
directory (standing in for machines), all on a real Temporal dev server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pg_helpers
from mill_helpers import PY, MillRepo, RunResult, git, wait_for
from taskmill.config import set_ledger_url


class Cluster:
    """``repo`` (a :class:`MillRepo`: the user's checkout and the ledger) whose ``origin``
    is a bare repository every worker clones."""

    def __init__(self, tmp: Path, address: str, *, checks: Sequence[str] = (),
                 run: Mapping[str, Any] | None = None, heartbeat_timeout: float = 30.0,
                 files: Mapping[str, str] | None = None, database: str | None = None) -> None:
        self.tmp = tmp
        self.address = address
        self.repo = MillRepo(tmp, checks=checks, run=run, files=files)
        self.origin = tmp / "origin.git"
        # each test has its own task queue on the shared server: its workers only
        self.queue = f"taskmill-{tmp.name}-{time.monotonic_ns()}"
        config = self.repo.root / ".taskmill" / "config.toml"
        with config.open("a") as fh:
            fh.write(f'\n[executor]\nkind = "temporal"\naddress = "{address}"\n'
                     f'task_queue = "{self.queue}"\nheartbeat_timeout = {heartbeat_timeout}\n')
        self.database = database
        """The PostgreSQL ledger's URL, committed as ``[ledger] url`` (workers read it from
        their clones, as a user's would); None: the SQLite ledger of the user's checkout,
        which the workers open through ``TASKMILL_DIR``."""
        if database is not None:
            set_ledger_url(config, database)
            self.repo.store = pg_helpers.open_store(database)
        self.repo.git("commit", "-qam", "executor: temporal")
        git(tmp, "clone", "-q", "--bare", str(self.repo.root), str(self.origin))
        self.repo.git("remote", "add", "origin", str(self.origin))
        self.repo.git("fetch", "-q", "origin")
        self.workers: dict[int, subprocess.Popen[str]] = {}
        env = {k: v for k, v in os.environ.items()
               if k not in ("TASKMILL_DIR", "TASKMILL_DATABASE_URL")}
        self.env = env if database is not None else {
            **env, "TASKMILL_DIR": str(self.repo.root / ".taskmill")}

    def start_worker(self, n: int, *, slots: int = 2, allow_agent_cmd: bool = True
                     ) -> subprocess.Popen[str]:
        workdir = self.tmp / f"worker{n}"
        log = (self.tmp / f"worker{n}.log").open("a")
        proc = subprocess.Popen(
            [PY, "-m", "taskmill", "worker", "--temporal", self.address, "--repo",
             str(self.origin), "--workdir", str(workdir), "--slots", str(slots),
             "--name", f"w{n}", *(["--allow-agent-cmd"] if allow_agent_cmd else [])],
            cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        log.close()
        self.workers[n] = proc
        assert wait_for(lambda: '"worker_started"' in self.log(n) or proc.poll() is not None,
                        timeout=60), self.log(n)
        assert proc.poll() is None, self.log(n)
        return proc

    def log(self, n: int) -> str:
        path = self.tmp / f"worker{n}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_worker(self, n: int) -> None:
        proc = self.workers.pop(n)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def hung(self, client: subprocess.Popen[str], exc: subprocess.TimeoutExpired) -> str:
        """Why ``client`` (a run that did not end in time) hangs: the workflows it waits on,
        and the stacks of its threads and of each worker's (``kill -USR1``), with the
        tails of what each said."""
        waits = running_workflows(self.address, self.queue)
        with contextlib.suppress(ProcessLookupError):
            os.kill(client.pid, signal.SIGUSR1)
        tails = self.stacks()
        out, err = "", ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, err = client.communicate(timeout=10)
        if not out:  # (what it said up to the timeout is in the second answer too)
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return (f"the run hung; it waits on:\n{waits}\n--- the run said:\n{out[-3000:]}"
                f"\n--- its stderr:\n{(err or '')[-8000:]}{tails}")

    def stacks(self) -> str:
        """The tails of the workers' logs, each ending with the stacks of its threads."""
        for proc in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1.0)  # (a failure's report: the stacks are written meanwhile)
        return "".join(f"\n--- worker{n}\n{self.log(n)[-6000:]}" for n in sorted(self.workers))

    def stop(self) -> None:
        for n in list(self.workers):
            proc = self.workers.pop(n)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.repo.store is not None:
            self.repo.store.close()
            self.repo.store = None

    def run_args(self, *args: str) -> list[str]:
        return ["--executor", "temporal", "--temporal", self.address, *args]

    def run(self, *args: str, timeout: float = 240.0) -> RunResult:
        return self.repo.run(*self.run_args(*args), timeout=timeout)

    def remote_landings(self, branch: str = "main") -> dict[str, list[str]]:
        """Task id -> commits on the remote's ``branch`` with its trailer."""
        self.repo.git("fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        out = self.repo.git("log", "--format=%H%x00%B%x01", f"refs/remotes/origin/{branch}")
        found: dict[str, list[str]] = {}
        for record in out.split("\x01"):
            if "\x00" not in record:
                continue
            sha, body = record.split("\x00", 1)
            for line in body.splitlines():
                if line.startswith("Taskmill-Task: "):
                    found.setdefault(line.split(": ", 1)[1].strip(), []).append(sha.strip())
        return found


def events_of(result: RunResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.events if e["event"] == kind]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:5000]


def running_workflows(address: str, queue: str) -> str:
    """What a hung test waits on: the queue's running workflows, each with its pending
    activities (type, state, attempt, worker, last failure), for a failure's message."""
    import asyncio

    from temporalio.client import Client

    async def describe() -> str:
        client = await Client.connect(address)
        lines = []
        query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
        async for wf in client.list_workflows(query):
            desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
            lines.append(f"{wf.id} (started {wf.start_time:%H:%M:%S})")
            for act in desc.raw_description.pending_activities:
                failure = act.last_failure.message if act.HasField("last_failure") else ""
                lines.append(f"  {act.activity_type.name} state={act.state} "
                             f"attempt={act.attempt} worker={act.last_worker_identity} "
                             f"heartbeat={act.last_heartbeat_time.ToJsonString()} "
                             f"failure={failure[:300]}")
        return "\n".join(lines) or "(no running workflow)"

    try:
        return asyncio.run(describe())
    except Exception as exc:  # a diagnosis must not hide the failure it describes
        return f"(could not list the workflows: {exc!r})"
