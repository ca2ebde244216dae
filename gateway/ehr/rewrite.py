"""EHR resources as the gateway's clients see them.

Everyone: the EHR's base URL never leaves — it becomes the gateway's base.
External principals additionally (the EHR-specific part of pseudonymisation; the egress
gate then does the general part: MRNs, narrative, free text, the PSEUDED label):
- the EHR's ids become stable gateway ids (a keyed digest of type and id), resolvable
  only through the gateway (see `EhrService.read`);
- a reference to the donor's EHR Patient becomes `Patient/<biobank Patient id>`;
  references to proxied types point at their gateway ids; any other reference (another
  patient, the EHR's Practitioners, Locations, ...) loses its target;
- `identifier`s (the EHR's own numbers, accession numbers, MRNs) and `meta.source` are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.ehr.keys import Keys
from gateway.served import PROXIED_TYPES

_PROXIED = frozenset(PROXIED_TYPES)


@dataclass(slots=True)
class External:
    """One external rewrite: the resource and the gateway ids it introduced (type, gateway id, EHR id)."""

    resource: dict[str, Any]
    ids: list[tuple[str, str, str]] = field(default_factory=list)


class Rewriter:
    def __init__(self, upstream_base: str, gateway_base: str, keys: Keys) -> None:
        self.upstream = upstream_base.rstrip("/")
        self.gateway = gateway_base.rstrip("/")
        self.keys = keys

    def gateway_id(self, type_: str, ehr_id: str) -> str:
        return self.keys.digest("ids", f"{type_}/{ehr_id}")[:32]

    def internal(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The EHR's resource with its URLs pointing at the gateway (orjson never escapes '/')."""
        raw = orjson.dumps(resource)
        if self.upstream.encode() not in raw:
            return resource
        return orjson.loads(raw.replace(self.upstream.encode(), self.gateway.encode()))

    def external(self, resource: dict[str, Any], ehr_patient: str | None, patient: str | None) -> External:
        out = External(resource)
        self._walk(resource, ehr_patient, patient, out)
        rtype, ehr_id = resource["resourceType"], resource["id"]
        resource["id"] = self.gateway_id(rtype, ehr_id)
        out.ids.append((rtype, resource["id"], ehr_id))
        meta = resource.get("meta")
        if isinstance(meta, dict):
            meta.pop("source", None)
        return out

    def _target(self, ref: str) -> tuple[str, str] | None:
        """(type, id) of a literal reference to the EHR (relative or under its base), else None."""
        ref = ref.removeprefix(self.upstream + "/")
        parts = ref.split("/")
        if "://" in ref or len(parts) not in (2, 4) or not parts[0][:1].isupper():
            return None
        return parts[0], parts[1]

    def _reference(self, node: dict[str, Any], ehr_patient: str | None, patient: str | None, out: External) -> None:
        ref = node["reference"]
        if ref.startswith("#"):
            return
        target = self._target(ref)
        if target is not None and target[0] == "Patient":
            node.pop("display", None)  # a patient's name
            if patient is not None and target[1] == ehr_patient:
                node["reference"] = f"Patient/{patient}"
                return
        elif target is not None and target[0] in _PROXIED:
            gid = self.gateway_id(target[0], target[1])
            out.ids.append((target[0], gid, target[1]))
            node["reference"] = f"{target[0]}/{gid}"
            return
        del node["reference"]

    def _walk(self, node: Any, ehr_patient: str | None, patient: str | None, out: External) -> Any:
        """Rewrite in place; returns None for what must be dropped (an emptied reference)."""
        if isinstance(node, str):
            return node.replace(self.upstream, self.gateway) if self.upstream in node else node
        if isinstance(node, list):
            kept = [v for v in (self._walk(item, ehr_patient, patient, out) for item in node) if v is not None]
            return kept or None
        if not isinstance(node, dict):
            return node
        node.pop("identifier", None)
        if isinstance(node.get("reference"), str):
            self._reference(node, ehr_patient, patient, out)
        for key in list(node):
            value = self._walk(node[key], ehr_patient, patient, out)
            if value is None:
                del node[key]
            else:
                node[key] = value
        return node or None
