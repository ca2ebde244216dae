"""Ingestion: the biobank's exports (source-export.md) -> FHIR resources in the store.

`load(store, source, ...)` maps, validates and stores an export and returns its
`LoadReport`; `write_demo_export(out_dir, subjects, seed)` writes a synthetic export.
Pipeline: sources.py (rows) -> scan.py (first pass: keys, duplicates, carried values) ->
prepare.py on worker processes (workers.py; mapping.py + template.py over mappings/*.yaml and
ConceptMaps, profile validation, search index rows) -> loader.py (cross-record rules in file
order, batches, Groups, Provenance in parts) -> report.py. What a load remembers per row is in
a scratch SQLite file (scratch.py), so its memory does not grow with the export.
"""

from gateway.ingest.demo import write_demo_export
from gateway.ingest.loader import load
from gateway.ingest.report import LoadReport

__all__ = ["LoadReport", "load", "write_demo_export"]
