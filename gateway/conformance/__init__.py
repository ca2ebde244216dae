"""Conformance runs: the suites under conformance/ (data) executed against any FHIR R4 base.

Public API: :func:`gateway.conformance.cli.run` and the typer app `gateway.conformance.cli.app`.
"""
