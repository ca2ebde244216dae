"""FHIR search over the store's index tables (R4 search.html).

Modules, one job each: `params` (the served parameters), `values` (normalisation shared by
indexer and parser), `extract` (index rows of a resource), `query` (parsing a request),
`system` (the types of a system-level search), `sql` (compiling criteria, with the access
restriction), `probe` (which criteria to check per resource, decided on the data),
`statement` (the page statement of one or several types), `total` (`_total`), `include`,
`cursor` (keyset positions and links), `shape` (`_summary`/`_elements`), `engine` (the
Searcher the API uses), `reindex`.
Import `gateway.search.engine.SearchEngine` directly: the store imports `params`/`extract`
for its indexer, so this package's root stays free of the store.
"""
