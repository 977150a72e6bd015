"""The research view's API: the experiments, their diffs, and contributions (issue 14).

``GET /api/research`` is what the dashboard's research view draws (the status, the noise
band, every experiment); ``POST /api/research/submit`` is ``taskmill research submit``
through the API: taskmill applies the patch to the current best, re-measures it itself and
keeps it only on its own figures (the answer is the experiment record, its verdict and both
figures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidInput, NotFound
from ..mill.git import Git
from ..project import Project
from .base import HandlerBase, json_response

DIFF_MAX_CHARS = 200_000


class ResearchHandlers(HandlerBase):
    env: Mapping[str, str]
    git: Git

    def _open(self, project: Project) -> Any:
        from ..research.session import config_path, open_research

        if not config_path(project).is_file():
            raise NotFound("this repository has no research.toml",
                           hint="`taskmill research init` writes one")
        return open_research(project, self.env, need_agent=False)

    async def research(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            from ..research.digest import status

            with self.pool.ledger() as led:
                res = self._open(Project(self.paths, self.config, led))
                experiments = res.load()
                tip = res.tip()
                return {"status": status(experiments, branch=res.config.branch, tip=tip,
                                         best_value=res.value_of(tip) if tip else None,
                                         config=res.config),
                        "experiments": [e.to_json() for e in experiments]}

        return json_response(await run_in_threadpool(work))

    async def research_diff(self, request: Request) -> Response:
        raw = request.path_params["n"]
        if not str(raw).isdigit():
            raise InvalidInput(f"{raw!r} is not an experiment number")
        n = int(raw)

        def work() -> dict[str, Any]:
            with self.pool.ledger() as led:
                res = self._open(Project(self.paths, self.config, led))
                exp = res.log.get(n)
            if exp is None:
                raise NotFound(f"no experiment {n} in this research")
            commit, parent = exp.data.get("commit"), exp.data.get("parent")
            if not commit or not parent:
                return {"n": n, "commit": None, "diff": "", "truncated": False}
            for rev in (commit, parent):
                if not re.fullmatch(r"[0-9a-f]{40,64}", str(rev)):
                    raise InvalidInput(f"{rev!r} is not a commit id")
            text = self.git.run("diff", "--no-color", str(parent), str(commit),
                                timeout=30.0).stdout
            return {"n": n, "commit": commit, "parent": parent,
                    "diff": text[:DIFF_MAX_CHARS], "truncated": len(text) > DIFF_MAX_CHARS}

        return json_response(await run_in_threadpool(work))

    async def research_submit(self, request: Request) -> Response:
        body = await self._body(request)
        patch = body.get("patch")
        if not isinstance(patch, str) or not patch.strip():
            raise InvalidInput("a contribution needs a patch (a string: `git diff` output)")
        claimed = body.get("claimed")
        if claimed is not None and (isinstance(claimed, bool)
                                    or not isinstance(claimed, int | float)
                                    or not math.isfinite(claimed)):
            raise InvalidInput("claimed must be a number (the metric the contributor measured)")
        contributor = body.get("contributor")
        if contributor is not None and not isinstance(contributor, str):
            raise InvalidInput("contributor must be a string")

        def work() -> dict[str, Any]:
            with self.pool.ledger() as led:
                res = self._open(Project(self.paths, self.config, led))
                exp = res.submit(patch, claimed=None if claimed is None else float(claimed),
                                 contributor=contributor or led.actor)
                result: dict[str, Any] = exp.to_json()
                return result

        return json_response(await run_in_threadpool(work))
