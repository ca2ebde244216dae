"""The HTML report renders in headless Chromium (the way a partner opens it) into a real page."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from gateway.conformance.cli import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, decompressed scanlines) of a PNG, with the standard library only."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, data, width, height = 8, b"", 0, 0
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        chunk = png[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            data += chunk
        position += 12 + length
    return width, height, zlib.decompress(data)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package `chromium`): "
                    "the screenshot check of the HTML report needs it")
def test_html_report_renders_as_a_page_with_content(liar_base: str, tmp_path: Path) -> None:
    assert run(liar_base, report_dir=tmp_path) == 1
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,1400", (tmp_path / "conformance.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1400)
    assert len(set(pixels)) > 64, "the screenshot is (nearly) blank"
