"""`resolve() is T` and unions in search-parameter expressions (the fast FHIRPath path)."""

from gateway.profiles.fhirpath import compile_expression

EVENT = {"resourceType": "AuditEvent",
         "agent": [{"who": {"reference": "Patient/p1"}}, {"who": {"reference": "Practitioner/x"}},
                   {"who": {"reference": "urn:uuid:0d6c"}}],
         "entity": [{"what": {"reference": "http://ehr.example/fhir/Patient/p2/_history/3"}},
                    {"what": {"reference": "Patient/p1"}}]}


def test_resolve_is_judges_references_by_their_type() -> None:
    patient = compile_expression("AuditEvent.agent.who.where(resolve() is Patient) | "
                                 "AuditEvent.entity.what.where(resolve() is Patient)")
    assert patient(EVENT) == [{"reference": "Patient/p1"}, {"reference": "http://ehr.example/fhir/Patient/p2/_history/3"}]
    practitioner = compile_expression("AuditEvent.agent.who.where(resolve() is Practitioner)")
    assert practitioner(EVENT) == [{"reference": "Practitioner/x"}]


def test_union_keeps_each_item_once() -> None:
    assert compile_expression("AuditEvent.entity.what | AuditEvent.entity.what")(EVENT) == [
        e["what"] for e in EVENT["entity"]]
