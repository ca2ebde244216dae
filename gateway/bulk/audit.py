"""The AuditEvent every export job leaves (FHIR R4 AuditEvent, IHE BALP / DICOM style).

Who: the client (and whether it is internal or external); what: the export kind, its
request, the Group, and the lines written per type; outcome and when. Written to the
store like any other resource, so internal auditors find it with an ordinary search — in
the same transaction that ends (or cancels) the job, so no job ends without its record.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from gateway.bulk.jobs import ExportFile, Job
from gateway.fhir.instant import now_us, to_instant

DCM = "http://dicom.nema.org/resources/ontology/DCM"
Outcome = Literal["0", "4", "8"]
"""R4 audit-event-outcome: success, minor failure (cancelled), serious failure."""


def audit_event(job: Job, files: list[ExportFile], outcome: Outcome, description: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for f in files:
        if f.kind == "output":
            counts[f.type] = counts.get(f.type, 0) + f.count
    request = job.request
    detail = [{"type": "job", "valueString": job.id}, {"type": "kind", "valueString": request.kind},
              {"type": "types", "valueString": ",".join(request.types)},
              *({"type": t, "valueString": str(n)} for t, n in sorted(counts.items()))]
    entities: list[dict[str, Any]] = [{
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2",
                 "display": "System Object"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
        "query": base64.b64encode(request.url.encode()).decode(),
        "detail": detail,
    }]
    if request.group_id:
        entities.append({"what": {"reference": f"Group/{request.group_id}"}})
    now = to_instant(now_us())
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110106", "display": "Export"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation", "display": "operation"},
                    {"system": "urn:ietf:rfc:3986", "code": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
        "action": "E",
        "period": {"start": to_instant(job.transaction_time), "end": now},
        "recorded": now,
        "outcome": outcome,
        "outcomeDesc": description,
        "agent": [
            {"type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
             "role": [{"text": f"{job.principal.audience} client"}],
             "who": {"identifier": {"value": job.client_id}}, "name": job.client_id, "requestor": True},
            {"type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
             "who": {"display": "biobank-gateway"}, "requestor": False},
        ],
        "source": {"observer": {"display": "biobank-gateway"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }
