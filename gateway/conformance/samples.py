"""Resources to test against: the ones this run created (fixtures), else ones found on the target.

Why both: with `--allow-writes` the runner knows exactly what it stored and can check that
each declared search parameter finds it; read-only against a partner's server it can only
use what is already there, found through whatever the target declares (search, else history).
"""

from __future__ import annotations

from typing import Any

from gateway.conformance.target import Target


class Samples:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.created: dict[str, list[str]] = {}
        self._chosen: dict[str, str | None] = {}
        self._current: dict[str, dict[str, Any] | None] = {}

    def remember(self, type_: str, id_: str) -> None:
        self.created.setdefault(type_, []).append(id_)
        self._chosen.pop(type_, None)
        self._current.pop(type_, None)

    def refresh(self) -> None:
        """Forget the current versions (cases in between may have updated them); keep which ones were chosen."""
        self._current.clear()

    def sample(self, type_: str) -> dict[str, Any] | None:
        """The current version of one resource of `type_`, the same resource for the whole run."""
        if type_ not in self._current:
            if type_ not in self._chosen:
                found = self._created(type_) or self._search(type_) or self._history(type_)
                self._chosen[type_] = found["id"] if found else None
                self._current[type_] = found
            else:
                self._current[type_] = self._read(type_, self._chosen[type_])
        return self._current[type_]

    def candidates(self, type_: str) -> list[dict[str, Any]]:
        """Every resource of `type_` this run created (current versions), else the one sample."""
        created = [found for id_ in self.created.get(type_, []) if (found := self._read(type_, id_))]
        sample = self.sample(type_)
        return created or ([sample] if sample else [])

    def _read(self, type_: str, id_: str | None) -> dict[str, Any] | None:
        found = self.target.get_json(f"{type_}/{id_}") if id_ else None
        return found if found and found.get("resourceType") == type_ else None

    def _created(self, type_: str) -> dict[str, Any] | None:
        return next((found for id_ in self.created.get(type_, []) if (found := self._read(type_, id_))), None)

    def _search(self, type_: str) -> dict[str, Any] | None:
        if not self.target.declares(type_, "search-type"):
            return None
        return _first(self.target.get_json(type_, [("_count", "1")]), type_)

    def _history(self, type_: str) -> dict[str, Any] | None:
        if not self.target.declares(type_, "history-type"):
            return None
        bundle = self.target.get_json(f"{type_}/_history", [("_count", "20")])
        resource = _first(bundle, type_)
        if resource is None:
            return None
        return self._read(type_, resource.get("id"))


def _first(bundle: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for entry in (bundle or {}).get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == type_ and resource.get("id"):
            return resource
    return None
