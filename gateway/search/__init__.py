"""FHIR search over the store's index tables (R4 search.html).

Modules, one job each: `params` (the served parameters), `values` (normalisation shared by
indexer and parser), `extract` (index rows of a resource), `query` (parsing a request),
`sql` (compiling it, with the access restriction), `include`, `cursor` (keyset pages and
links), `shape` (`_summary`/`_elements`), `engine` (the Searcher the API uses), `reindex`.
Import `gateway.search.engine.SearchEngine` directly: the store imports `params`/`extract`
for its indexer, so this package's root stays free of the store.
"""
