"""Resources, their versions and their search indexes, on SQLite (default) or PostgreSQL."""

from gateway.store.resources import PutResult, Store, StoredResource, Transaction, VersionConflict

__all__ = ["PutResult", "Store", "StoredResource", "Transaction", "VersionConflict"]
