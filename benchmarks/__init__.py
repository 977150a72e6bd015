"""taskmill's benchmarks. ``python -m benchmarks`` runs them all and prints a table.

Each module runs on its own too (``python -m benchmarks.ledger`` ...); each has
``parser()`` and ``run(args) -> Report`` (see ``mill_common``). Generated data (the big
ledger) is cached under ``benchmarks/.data/``, which git ignores.
"""
