"""A client's search on a proxied type, split into what the gateway translates (the
patient) and what it passes to the EHR untouched (the rest).

Only parameters the EHR's CapabilityStatement declares for the type go upstream;
anything else is refused with 400 rather than silently ignored upstream (FHIR
search.html#errors: a server that ignores a parameter would widen the result). Chains,
`_has`, `_include`/`_revinclude` and `_contained` are refused outright: they would reach
resources (the EHR's own Patient, with the MRN) that no consent check was made for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.fhir.errors import FhirError
from gateway.fhir.paging import parse_count

PATIENT_PARAMS = ("patient", "subject")
GATEWAY_PARAMS = frozenset({"_format", "_page", "_pretty"})
REFUSED = frozenset({"_include", "_revinclude", "_has", "_contained", "_containedType", "_summary", "_total"})
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProxyQuery:
    type: str
    patient: str | None
    """The biobank Patient named by `patient`/`subject`, translated to the EHR's before going upstream."""
    patient_param: str
    params: tuple[tuple[str, str], ...]
    """Everything else, in the client's order, `_count` capped."""

    def upstream(self, ehr_patient: str | None) -> list[tuple[str, str]]:
        named = [(self.patient_param, ehr_patient)] if ehr_patient else []
        return [*named, *self.params]


def _invalid(text: str) -> FhirError:
    return FhirError.of(400, "invalid", text)


def _patient_id(value: str, gateway_base: str) -> str:
    ref = value.removeprefix(gateway_base + "/").removeprefix("Patient/")
    if "," in ref or not _ID.match(ref):
        raise _invalid(f"patient/subject must name one biobank Patient (Patient/<id>), got {value!r}")
    return ref


def parse(type_: str, items: list[tuple[str, str]], gateway_base: str, default_count: int,
          max_count: int) -> ProxyQuery:
    patient: str | None = None
    patient_param = "patient"
    rest: list[tuple[str, str]] = []
    for name, value in items:
        base, _, modifier = name.partition(":")
        if base in GATEWAY_PARAMS:
            continue
        if base in REFUSED or "." in base:
            raise _invalid(f"{name} is not supported on EHR-proxied {type_} searches")
        if base in PATIENT_PARAMS:
            if modifier not in ("", "Patient") or patient is not None:
                raise _invalid(f"{name}: one patient (or subject) parameter naming a biobank Patient per search")
            patient, patient_param = _patient_id(value, gateway_base), base
        elif base == "_count":
            rest.append(("_count", str(parse_count(value, default_count, max_count))))
        else:
            rest.append((name, value))
    return ProxyQuery(type_, patient, patient_param, tuple(rest))


def check_declared(query: ProxyQuery, declared: frozenset[str]) -> None:
    """400 naming every parameter the EHR does not declare for this type."""
    names = [query.patient_param] if query.patient else []
    names += [name.partition(":")[0] for name, _ in query.params if name != "_count"]
    unknown = sorted({n for n in names if n not in declared})
    if unknown:
        raise _invalid(f"The hospital EHR does not support {', '.join(unknown)} on {query.type}; "
                       f"supported: {', '.join(sorted(declared)) or 'none'}")
