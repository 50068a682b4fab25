"""The HTML report in a real browser: headless Chromium renders the four SVG charts of a small
known run (tests/unit/fixtures/report/small_run.sql) from the file alone, offline."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from app.report_cli import run_report
from projections import schema
from projections.database import Database

FIXTURE = Path(__file__).parents[1] / "unit" / "fixtures" / "report" / "small_run.sql"
BROWSER_SECONDS = 120
CHARTS = ("priority", "outcomes", "workspaces", "health")
# Colours the charts paint (projections/charts.py): seeing them proves the SVG was drawn.
CRITICAL_RED = bytes.fromhex("c0392b")
HEALTHY_GREEN = bytes.fromhex("27ae60")
HIGH_ORANGE = bytes.fromhex("e67e22")
MEDIUM_BLUE = bytes.fromhex("2e86c1")


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    """The small run's HTML report, written by `autopilot report --html`."""
    url = f"sqlite:///{tmp_path / 'projections.sqlite3'}"
    database = Database.open(url)
    schema.create(database, 60)
    text = "\n".join(line for line in FIXTURE.read_text().splitlines() if not line.startswith("--"))
    for statement in filter(str.strip, text.split(";")):
        database.execute(statement)
    database.close()
    out = tmp_path / "report.html"
    assert run_report(url, str(out)) == 0
    return out


def test_chromium_renders_the_four_charts(chromium: str, report_file: Path, tmp_path: Path) -> None:
    dom = _browse(chromium, tmp_path, "--dump-dom", report_file).stdout

    found = dict(re.findall(r'<svg data-chart="([a-z]+)"(.*?)</svg>', dom, re.DOTALL))
    assert tuple(found) == CHARTS
    for name, svg in found.items():
        shapes = svg.count("<rect") + svg.count("<path") + svg.count("<polyline")
        assert shapes >= 3, f"chart {name} drew {shapes} shapes"
        assert "no data" not in svg, name


def test_chromium_screenshot_shows_the_charts_in_colour(
    chromium: str, report_file: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"

    _browse(chromium, tmp_path, f"--screenshot={shot}", report_file)

    assert shot.is_file() and shot.stat().st_size > 10_000
    colours = _colours(shot.read_bytes())
    assert len(colours) > 20  # text anti-aliasing alone gives dozens; a blank page gives one
    for colour in (CRITICAL_RED, HEALTHY_GREEN, HIGH_ORANGE, MEDIUM_BLUE):
        assert colour in colours, f"#{colour.hex()} not painted"


def _browse(
    chromium: str, tmp_path: Path, action: str, page: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        chromium,
        "--headless",
        # Root (as in CI containers) cannot use Chromium's sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,2000",
        action,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_SECONDS, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _colours(png: bytes) -> set[bytes]:
    """Every RGB colour in an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data, header = 8, [], b""
    while position < len(png):
        (size,) = struct.unpack(">I", png[position : position + 4])
        kind, body = png[position + 4 : position + 8], png[position + 8 : position + 8 + size]
        position += 12 + size
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data.append(body)
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour_type in (2, 6)
    step = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(data)), width * step
    colours: set[bytes] = set()
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, step)
        colours.update(line[x : x + 3] for x in range(0, stride, step))
        previous = line
    return colours


def _unfilter(kind: int, line: bytearray, above: bytes, step: int) -> bytes:
    """Undo one scanline's PNG filter (RFC 2083, 6.2-6.6)."""
    if kind == 0:
        return bytes(line)
    if kind == 2:
        return bytes((a + b) & 255 for a, b in zip(line, above, strict=True))
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        corner = above[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + ((left + above[i]) >> 1)) & 255
        elif kind == 4:
            guess = left + above[i] - corner
            near = min(
                (abs(guess - left), 0, left),
                (abs(guess - above[i]), 1, above[i]),
                (abs(guess - corner), 2, corner),
            )
            line[i] = (line[i] + near[2]) & 255
    return bytes(line)
