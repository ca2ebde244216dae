"""FHIRPath for suite assertions and search-value derivation (fhirpathpy with the R4 model).

Why a wrapper: fhirpathpy resolves `Specimen.x` but not the base-type prefixes
(`Resource.id`, `DomainResource.text`) that the R4 SearchParameter expressions use, so
those are rewritten to the resource's own type first.
"""

from __future__ import annotations

import re
from typing import Any

from fhirpathpy import evaluate as _evaluate
from fhirpathpy.models import models

_BASE_PREFIX = re.compile(r"(?<![\w.])(?:Resource|DomainResource)\.")
_R4 = models["r4"]


def evaluate(resource: dict[str, Any], expression: str) -> list[Any]:
    """The result collection; a FHIRPath error is raised as ValueError with the expression in the message."""
    type_ = resource.get("resourceType")
    if isinstance(type_, str):
        expression = _BASE_PREFIX.sub(f"{type_}.", expression)
    try:
        return list(_evaluate(resource, expression, {}, _R4))
    except Exception as exc:  # fhirpathpy raises bare Exceptions for parse and type errors
        raise ValueError(f"FHIRPath {expression!r}: {exc}") from exc

