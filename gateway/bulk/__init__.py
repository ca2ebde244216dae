"""FHIR Bulk Data export (`$export`, Bulk Data Access IG v2): jobs, their runner and their files.

`request` parses and checks a kick-off, `jobs` keeps job state in the database (so any
instance answers a status poll and a restarted one resumes), `runner` turns one job into
NDJSON files, `dispatch` hands jobs to workers (pgqueuer on PostgreSQL, in-process on
SQLite), `service` is the one object the HTTP layer talks to.
"""
