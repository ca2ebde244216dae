"""The gateway passes its own conformance run: every suite, with writes, authenticated the
way a hospital system would be (SMART backend services with its own key)."""

from __future__ import annotations

from pathlib import Path

from gateway.conformance.cli import run
from tests.conformance.conftest import RunningGateway


def test_the_gateway_passes_its_own_conformance_run(running_gateway: RunningGateway, tmp_path: Path,
                                                    capsys) -> None:  # type: ignore[no-untyped-def]
    code = run(running_gateway.base, client_id=running_gateway.client_id, key=running_gateway.key,
               report_dir=tmp_path, allow_writes=True)
    output = capsys.readouterr().out
    print(output)
    failures = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert code == 0, "conformance failures:\n" + "\n".join(failures)
    assert (tmp_path / "conformance.junit.xml").is_file() and (tmp_path / "conformance.html").is_file()
    assert "PASS smart/backend-services-token" in output
