"""FHIR search over the store's index tables."""

from gateway.search.engine import SearchEngine

__all__ = ["SearchEngine"]
