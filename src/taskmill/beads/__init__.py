"""Beads JSONL in and out.

``import_beads`` reads a Beads export (``.beads/issues.jsonl``: one issue per line, with its
``labels``, ``dependencies`` and ``comments`` embedded) into the ledger, all or nothing, in one
transaction. ``export_beads`` writes the ledger back in the same format. The round trip is
lossless: every record exported after an import parses to the same JSON object as the line it
came from (and, for records in Beads' usual key order, to the same bytes).

How that is kept:

- fields taskmill knows go to their columns (``tasks``, ``labels``, ``deps``, ``comments``);
- everything else -- fields taskmill does not know (``owner``, ``deleted_at``, ...), and the
  cases the columns cannot tell apart (a key present with ``""`` or ``null`` where the column
  would leave it out, a key absent where the column would write it, a key order other than
  Beads' usual one) -- goes to the row's ``extra`` column as JSON::

      {"fields": {...unknown keys, in order...},
       "set": {...known keys whose original value the columns cannot reproduce...},
       "absent": [...known keys the original did not have...],
       "keys": [...the original key order, only when it is not the usual one...]}

Other keys in ``extra`` are taskmill's own and are not exported (a plan import marks the
dependencies it made with ``{"plan": <source>}``).

Statuses and dependency types of any name are stored as they are; only ``blocks`` and
``parent-child`` gate readiness. Dependencies may name ids that are not in the ledger; they
are kept. Cycles in imported data are kept too (``Ledger.cycles()`` reports them).

An import merges: records whose id is already in the ledger are compared with what the ledger
would export for them and updated only when they differ; tasks that are not in the file are
left alone. Each created or updated task gets one ``imported`` audit event; a re-import of an
unchanged file writes nothing.

The package: :mod:`.record` (the record format, and a stored task as a record),
:mod:`.parse` (a record back into stored parts; the JSONL file checked line by line),
:mod:`.importer` (into the ledger) and :mod:`.exporter` (out of it, also as taskmill's own
JSON).
"""

from __future__ import annotations

from .exporter import beads_records, export_beads, export_json
from .importer import ImportProgress, ImportReport, import_beads
from .parse import parse_beads
from .record import KEY_ORDER, encode_record, export_record

__all__ = [
    "KEY_ORDER",
    "ImportProgress",
    "ImportReport",
    "beads_records",
    "encode_record",
    "export_beads",
    "export_json",
    "export_record",
    "import_beads",
    "parse_beads",
]
