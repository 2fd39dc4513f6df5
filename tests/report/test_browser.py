"""The HTML report in a real headless browser (Debian chromium, started here)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.report.conftest import BASE, OUTLIERS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
# Runs after the load event (images decoded) and records what it finds in the DOM that --dump-dom prints.
IMAGE_PROBE = (
    "<script>window.addEventListener('load',function(){var bad=0;for(var i=0;i<document.images.length;i++)"
    "{var im=document.images[i];if(!im.complete||im.naturalWidth===0)bad++;}"
    "document.body.setAttribute('data-images',String(document.images.length));"
    "document.body.setAttribute('data-broken-images',String(bad));});</script>"
)


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        *extra, url,
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def _load(tmp: Path, html: str) -> tuple[str, list[str]]:
    """(DOM after load, console messages) for ``html`` opened from a file:// URL."""
    page = tmp / "page.html"
    page.write_text(html.replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    p = _chromium(tmp, page.as_uri(), "--dump-dom")
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, _console_errors(p.stderr)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def html_report(store_url) -> str:
    from hubaudit.pipeline.report import load_report
    from hubaudit.report import get_format
    from hubaudit.store import Store

    with Store.open(store_url) as store:
        report = load_report(store, BASE, with_norm_maps=True, suppressions=[],
                             now=datetime.now(timezone.utc))  # fmt: skip
    return get_format("html").render(report)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_the_checks_catch_a_broken_page(tmp_path):
    # The detectors below must be able to fail: a page with a script error and a missing image.
    dom, errors = _load(tmp_path, '<!DOCTYPE html><html><body><img src="missing.png">'
                                  "<script>undefinedFn()</script></body></html>")
    assert any("undefinedFn" in e for e in errors)
    assert 'data-broken-images="1"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_html_report_renders_in_chromium(tmp_path, html_report):
    dom, errors = _load(tmp_path, html_report)
    assert errors == []
    n_images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert n_images == 3  # the histogram and one heat-map pair per flagged adapter
    assert 'data-broken-images="0"' in dom
    for element_id in ("summary", "calibration", "distribution", "score-histogram", "findings", "not-audited"):
        assert f'id="{element_id}"' in dom
    assert dom.count('class="plot heatmap"') == 2
    assert OUTLIERS[0] in dom and "mean_attack_rate" in dom and "pickle_format" in dom

    shot = tmp_path / "report.png"
    p = _chromium(tmp_path, (tmp_path / "page.html").as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert p.returncode == 0, p.stderr[-2000:]
    width, height = _png_size(shot)
    assert (width, height) == (1280, 2400)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
