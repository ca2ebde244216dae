"""`needs:` of a case — what the target must declare (or the run must have) for the case to apply.

Why: a conformance run checks a server against what it says it does; a case about
something the server does not claim is skipped, with the reason in the report, never failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.conformance.target import Target


@dataclass(frozen=True)
class RunOptions:
    allow_writes: bool
    has_token: bool
    has_client: bool


Need = Callable[[Any, Target, RunOptions], str | None]
"""None when satisfied, else the reason to skip."""


def _pairs(argument: Any) -> list[list[str]]:
    return argument if argument and isinstance(argument[0], list) else [argument]


def _interaction(argument: Any, target: Target, _: RunOptions) -> str | None:
    for type_, code in _pairs(argument):
        if not target.declares(type_, code):
            return f"the target does not declare {code} on {type_}"
    return None


def _system_interaction(code: str, target: Target, _: RunOptions) -> str | None:
    return None if code in target.system_interactions else f"the target does not declare system {code}"


def _operation(argument: Any, target: Target, _: RunOptions) -> str | None:
    type_, name = argument if isinstance(argument, list) else (None, argument)
    where = f"on {type_}" if type_ else "at system level"
    return None if name in target.operations(type_) else f"the target does not declare ${name} {where}"


def _resource_flag(argument: list[str], target: Target, _: RunOptions) -> str | None:
    """`[Type, conditionalCreate]`: a CapabilityStatement.rest.resource flag that is set and not 'not-supported'."""
    type_, flag = argument
    value = target.resource(type_).get(flag)
    return None if value not in (None, False, "not-supported") else f"the target does not declare {flag} on {type_}"


def _no_format(mime: str, target: Target, _: RunOptions) -> str | None:
    """For cases that check the refusal of a format the server does not offer."""
    offered = [str(f) for f in (target.capability or {}).get("format") or []]
    return f"the target offers {mime} ({offered})" if any(mime in f for f in offered) else None


def _smart(_: Any, target: Target, __: RunOptions) -> str | None:
    if target.declares_smart or target.smart is not None:
        return None
    return "the target declares no SMART security and publishes no .well-known/smart-configuration"


def _client(_: Any, __: Target, options: RunOptions) -> str | None:
    return None if options.has_client else "needs backend-services credentials: run with --client-id ID --key FILE"


def _token(_: Any, __: Target, options: RunOptions) -> str | None:
    return None if options.has_token else "needs a token: run with --token T or --client-id ID --key FILE"


NEEDS: dict[str, Need] = {
    "interaction": _interaction, "system_interaction": _system_interaction, "operation": _operation,
    "resource_flag": _resource_flag, "no_format": _no_format, "smart": _smart, "client": _client, "token": _token,
}


def unmet(needs: dict[str, Any], target: Target, options: RunOptions) -> str | None:
    """The first unmet need's reason, or None. An unknown key is a suite error, reported as such."""
    for key, argument in needs.items():
        check = NEEDS.get(key)
        if check is None:
            raise KeyError(f"unknown need {key!r}; known: {sorted(NEEDS)}")
        reason = check(argument, target, options)
        if reason:
            return reason
    return None
