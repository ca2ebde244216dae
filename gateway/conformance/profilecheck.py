"""The biobank profiles as the profiles suite sees them: `gateway.profiles.ProfileValidator`, loaded lazily.

Why lazily: the validator is optional for running the other suites (and is built by another
part of the project); when it cannot be loaded the profile checks are skipped with the
reason, never silently passed.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol


class _Validator(Protocol):
    def validate(self, resource: dict[str, Any], profile: str | None = None) -> list[Any]: ...


@cache
def validator() -> tuple[_Validator | None, str]:
    """(validator, "") or (None, why it is unavailable)."""
    try:
        from gateway.profiles import ProfileValidator
    except ImportError as exc:
        return None, f"gateway.profiles.ProfileValidator is not available ({exc})"
    try:
        return ProfileValidator.load(), ""
    except Exception as exc:  # a broken profiles/ folder must not stop the other suites
        return None, f"profiles/ could not be loaded: {type(exc).__name__}: {exc}"


def problems(resource: dict[str, Any]) -> list[str]:
    """Error-level issues of `resource` against base R4 bindings and the profiles it claims."""
    checker, _ = validator()
    assert checker is not None, "call validator() first"
    found = []
    for issue in checker.validate(resource):
        if getattr(issue, "severity", "error") in ("error", "fatal"):
            where = ", ".join(getattr(issue, "expression", ()) or ())
            found.append(f"{getattr(issue, 'diagnostics', issue)}" + (f" [{where}]" if where else ""))
    return found
