"""Ingestion: the biobank's exports (source-export.md) -> FHIR resources in the store.

`load(store, source, ...)` maps, validates and stores an export and returns its
`LoadReport`; `write_demo_export(out_dir, subjects, seed)` writes a synthetic export.
Pipeline: sources.py (rows) -> mapping.py (mappings/*.yaml + ConceptMaps) -> loader.py
(cross-record rules, batches, Groups, Provenance) -> report.py.
"""

from gateway.ingest.demo import write_demo_export
from gateway.ingest.loader import load
from gateway.ingest.report import LoadReport

__all__ = ["LoadReport", "load", "write_demo_export"]
