"""Profile validation throughput on one core, against fhir.resources R4B parsing measured in the same run.

Why: validation runs on every write, so it must not be the ingest bottleneck (target
≥ 5,000 Specimens/s). The baseline is `fhir.resources.R4B` `Specimen.model_validate` on the
same resource, so the ratio is comparable across machines.

    .venv/bin/python bench/validate.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from fhir.resources.R4B.specimen import Specimen

from gateway.profiles import ProfileValidator

EXAMPLE = Path(__file__).resolve().parents[1] / "tests" / "profiles" / "examples" / "good" / "specimen-whole-blood.json"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, measured for about `seconds` after a short warm-up."""
    for _ in range(200):
        fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(500):
            fn()
        count += 500
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    resource = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    validator = ProfileValidator.load()
    assert validator.validate(resource) == [], "the benchmark resource must be valid"
    size = len(json.dumps(resource, separators=(",", ":")))
    ours = rate(lambda: validator.validate(resource), args.seconds)
    baseline = rate(lambda: Specimen.model_validate(resource), args.seconds)
    print(f"resource: Specimen, {size} bytes compact JSON, profile BiobankSpecimen")
    print(f"profile validation:                 {ours:10,.0f} resources/s ({1e6 / ours:.0f} µs each)")
    print(f"baseline R4B Specimen.model_validate: {baseline:8,.0f} resources/s ({1e6 / baseline:.0f} µs each)")
    print(f"ratio validation / baseline:        {ours / baseline:10.2f}x")


if __name__ == "__main__":
    main()
