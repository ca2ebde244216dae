"""Opening the store the way every entry point needs it (server, CLI, benchmarks).

The store maintains its own search indexes; the access layer adds its consent-state hook
here, so a Consent written by any path — REST, transaction, a CLI load — refreshes the
subject's decision in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.access.consent import consent_hook
from gateway.profiles import ProfileValidator
from gateway.settings import Settings
from gateway.store import Store, VersionConflict

CONCEPTMAPS = Path(__file__).resolve().parent.parent / "mappings" / "conceptmaps"


async def open_store(settings: Settings) -> Store:
    store = await Store.open(settings.database_url)
    store.hooks.append(consent_hook)
    return store


def conformance_resources(validator: ProfileValidator) -> list[dict[str, Any]]:
    """What the server publishes read-only: profiles/ and the ConceptMaps of mappings/."""
    maps = [orjson.loads(p.read_bytes()) for p in sorted(CONCEPTMAPS.glob("*.json"))]
    return [*validator.conformance_resources(), *maps]


async def publish_conformance(store: Store, validator: ProfileValidator) -> None:
    """Store the conformance resources (a no-op when unchanged). Several workers starting
    together may race on the first insert; the loser finds them written and retries once."""
    resources = conformance_resources(validator)
    try:
        await store.put_many(resources)
    except VersionConflict:
        await store.put_many(resources)


def supported_profiles(validator: ProfileValidator) -> Callable[[str], list[str]]:
    """type -> the biobank profile URLs for it (CapabilityStatement supportedProfile)."""
    by_type: dict[str, list[str]] = {}
    for resource in validator.conformance_resources():
        if resource.get("resourceType") == "StructureDefinition" and resource.get("kind") == "resource":
            by_type.setdefault(resource["type"], []).append(resource["url"])
    return lambda type_: by_type.get(type_, [])
