"""Server-assigned ids: UUIDv7 (RFC 9562), valid FHIR ids, unique, ordered by creation time."""

from __future__ import annotations

import re
import time
import uuid

from gateway.store.resources import new_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_server_assigned_ids_are_uuid7_unique_and_time_ordered() -> None:
    first = [new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_id()
    assert len(set(first)) == 1000
    assert all(FHIR_ID.fullmatch(i) and uuid.UUID(i).version == 7 for i in [*first, later])
    assert all(i < later for i in first)  # a later millisecond sorts after (string order = time order)
    stamp = int(uuid.UUID(later).hex[:12], 16) / 1000
    assert abs(stamp - time.time()) < 5
