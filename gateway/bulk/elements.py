"""`_elements` for export lines (Bulk Data IG v2; FHIR search.html#elements).

Applied to what the egress gate released — never to the stored bytes — so subsetting
can only remove. A subsetted resource is marked `SUBSETTED`, as FHIR requires, because
it may no longer be valid against its profile.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
_ALWAYS = ("resourceType", "id", "meta")


def subsetter(elements: tuple[tuple[str | None, str], ...], type_: str) -> Callable[[bytes], bytes] | None:
    """The function that subsets lines of `type_`, or None when `_elements` does not concern it
    (no elements, or only elements qualified with other types)."""
    keep = {name for owner, name in elements if owner is None or owner == type_}
    if not keep:
        return None
    wanted = (*_ALWAYS, *sorted(keep))

    def subset(line: bytes) -> bytes:
        resource = orjson.loads(line)
        out = {k: resource[k] for k in wanted if k in resource}
        meta = dict(out.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        out["meta"] = meta
        return orjson.dumps(out)

    return subset
