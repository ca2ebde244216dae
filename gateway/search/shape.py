"""`_summary` and `_elements` (search.html#summary, #elements), applied to the bytes the gate let out.

Shaping runs after the egress gate on its output, so it can only remove; which elements
are "summary" comes from the R4 definitions as `fhir.resources` carries them
(`summary_element_property`), never from a list typed here. Shaped resources are tagged
SUBSETTED, as FHIR requires.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})

Shape = Callable[[bytes], bytes]


@cache
def summary_elements(type_: str) -> frozenset[str]:
    """Top-level JSON names of the elements R4 marks isSummary for `type_`."""
    model = get_fhir_model_class(type_)
    names = set(_ALWAYS)
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)


def _subset(resource: dict[str, Any], keep: Callable[[str], bool]) -> bytes:
    out = {k: v for k, v in resource.items() if keep(k.removeprefix("_")) or k in _ALWAYS}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out)


def shaper(summary: str | None, elements: tuple[str, ...]) -> Shape | None:
    """The function that shapes one resource's bytes, or None when the resource goes out whole."""
    if summary == "true":
        return lambda raw: _shape_summary(orjson.loads(raw))
    if summary == "data":
        return lambda raw: _subset(orjson.loads(raw), lambda k: k != "text")
    if elements:
        return lambda raw: _subset(orjson.loads(raw), lambda k: any(_names(k, e) for e in elements))
    return None


def _names(key: str, element: str) -> bool:
    """`collected` names `collectedDateTime` too: a choice element is asked for by its base name."""
    return key == element or (key.startswith(element) and len(key) > len(element) and key[len(element)].isupper())


def _shape_summary(resource: dict[str, Any]) -> bytes:
    names = summary_elements(resource["resourceType"])
    return _subset(resource, names.__contains__)
