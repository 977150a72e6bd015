"""The review gate: an AI reviewer on every landing (``[review]``), its findings and their
fates in the ledger, the hit rate and its tuning (see :mod:`.findings`, :mod:`.reviewer`,
:mod:`.book`, :mod:`.stats`, :mod:`.gate`)."""
