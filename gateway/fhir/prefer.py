"""The `Prefer` header (RFC 7240) as FHIR uses it: return= and handling=."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prefer:
    return_: str = "representation"
    handling: str = "lenient"
    respond_async: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        if not header:
            return cls()
        values: dict[str, str] = {}
        flags: set[str] = set()
        for part in header.replace(";", ",").split(","):
            key, sep, value = part.strip().partition("=")
            if sep:
                values[key.strip().lower()] = value.strip().strip('"')
            elif key.strip():
                flags.add(key.strip().lower())
        ret = values.get("return", "representation")
        if ret not in ("minimal", "representation", "OperationOutcome"):
            ret = "representation"
        handling = values.get("handling", "lenient")
        return cls(ret, handling if handling in ("strict", "lenient") else "lenient", "respond-async" in flags)
