"""Biobank FHIR Gateway: the biobank's FHIR R4 front door (see README)."""

__version__ = "0.1.0"
