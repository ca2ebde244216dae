"""FHIR protocol knowledge, nothing biobank-specific. Imports nothing else of the gateway."""
