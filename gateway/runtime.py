"""Opening the store the way every entry point needs it (server, CLI, benchmarks).

The store maintains its own search indexes; the access layer adds its consent-state hook
here, so a Consent written by any path — REST, transaction, a CLI load — refreshes the
subject's decision in the same transaction.
"""

from __future__ import annotations

from gateway.access.consent import consent_hook
from gateway.settings import Settings
from gateway.store import Store


async def open_store(settings: Settings) -> Store:
    store = await Store.open(settings.database_url)
    store.hooks.append(consent_hook)
    return store
