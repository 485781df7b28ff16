"""The reconciliation service: import two sides of financial records, match them, review the result.

Pure parts (no I/O beyond the bytes handed in): :mod:`app.records` (the normalised record
schema), :mod:`app.importers` (file formats to records) and :mod:`app.engine` (matching).
"""
