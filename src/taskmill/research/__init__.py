"""Research mode (issue 14): a metric-driven keep-or-revert loop, several agents at once,
every result re-measured by taskmill before the research branch moves.

- :mod:`.config`: ``research.toml`` (pydantic);
- :mod:`.measure`: running the metric (as a check), reading its figures, the noise;
- :mod:`.records`: experiments as ledger records (tasks of type ``experiment``);
- :mod:`.gitops`: the branch (compare-and-swap), experiment refs, replaying, patches;
- :mod:`.digest`: the prompt, the digest of what was tried, status and ``results.tsv``;
- :mod:`.loop`: the workers, verification, contributions, resuming;
- :mod:`.session`: opening a research from a project (what the CLI and web API call).
"""
