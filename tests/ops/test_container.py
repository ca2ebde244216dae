"""The image builds from the repository alone — where a Docker engine is there to build it."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from tests.ops.conftest import ROOT


def _engine() -> str | None:
    """None when an engine answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=30)
    if info.returncode != 0:
        return f"no Docker engine answers here (`docker info`: {info.stderr.strip().splitlines()[-1:]})"
    return None


def test_docker_build_succeeds_from_a_clean_checkout() -> None:
    if reason := _engine():
        pytest.skip(f"docker build not run: {reason}")
    tag = f"biobank-gateway:test-{uuid.uuid4().hex[:8]}"
    built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1200)
    try:
        assert built.returncode == 0, built.stderr[-3000:]
        shape = "{{.Config.User}} {{.Config.Healthcheck}}"
        user = subprocess.run(["docker", "image", "inspect", tag, "--format", shape], capture_output=True, text=True,
                              timeout=60).stdout
        assert user.startswith("gateway ") and "healthz" in user, "non-root, with a HEALTHCHECK"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)
