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
    "document.body.setAttribute('data-broken-images',String(bad));"
    "document.body.setAttribute('data-height',String(document.documentElement.scrollHeight));});</script>"
)
WIDTH = 1280  # the window width every page is laid out at (CSS px)
SCREENSHOT = Path("/tmp/report_screenshot.png")  # a copy of the evidence report's screenshot, to look at


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


def _load(tmp: Path, html: str, name: str = "page.html") -> tuple[str, list[str]]:
    """(DOM after load, console messages) for ``html`` opened from a file:// URL."""
    page = tmp / name
    page.write_text(html.replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    p = _chromium(tmp, page.as_uri(), "--dump-dom", f"--window-size={WIDTH},1000")
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, _console_errors(p.stderr)


def _height(dom: str) -> int:
    """The laid-out page height in CSS px (the document's scrollHeight at WIDTH)."""
    return int(re.search(r'data-height="(\d+)"', dom).group(1))


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
    assert OUTLIERS[0] in dom and "mean attack rate 0.62" in dom and "pickle_format" in dom

    shot = tmp_path / "report.png"
    p = _chromium(tmp_path, (tmp_path / "page.html").as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert p.returncode == 0, p.stderr[-2000:]
    width, height = _png_size(shot)
    assert (width, height) == (1280, 2400)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB


# ---------------------------------------------------------------- the evidence report (why each finding is flagged)
N_SPOT = 12  # clean adapters probed anyway (spot checks)


@pytest.fixture(scope="module")
def evidence_reports(store_url, tmp_path_factory) -> tuple:
    """(report, the same report with one spot check) from a copy of the session store, with probe
    results as the prober and the blind search store them: a battery-and-search-confirmed weight outlier
    and N_SPOT clean spot checks (their records hold worker pids, timings and paths: never shown)."""
    import dataclasses as dc
    import sqlite3

    from hubaudit.pipeline.report import load_report
    from hubaudit.store import Store
    from tests.report.test_why import CLEAN_PROBE, battery, searched

    db = tmp_path_factory.mktemp("evidence") / "h.db"
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    found = searched(battery((1.0, 0.9, 0.5, 0.0, 0.0, 0.0)), "rfc", (1.0, 1.0, 0.96), robust=0.96)
    with Store.open(f"sqlite:///{db}") as store:
        rows = store.audit_rows(BASE)
        clean = [r for r in rows if r.repo_id.startswith("org") and r.flagged is False][:N_SPOT]
        targets = {next(r.revision_id for r in rows if r.repo_id == OUTLIERS[1]): found}
        targets |= {r.revision_id: CLEAN_PROBE for r in clean}
        for rid in targets:
            store.enqueue_probe(rid, priority=1.0)
        for job in store.claim_probe_jobs("test", limit=len(targets), lease_seconds=60):
            store.finish_probe_job(job.id, targets[job.revision_id] | {"repo_id": job.repo_id, "sha": job.sha})
        report = load_report(store, BASE, with_norm_maps=True, suppressions=[], now=datetime.now(timezone.utc))
    spots = [e for e in report.adapters if e.probe and not e.is_finding]
    one = dc.replace(report, adapters=tuple(dc.replace(e, probe=None, probe_summary=None) if e in spots[1:] else e
                                            for e in report.adapters))  # fmt: skip
    return report, one


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_evidence_report_in_chromium_says_why_and_stays_short(tmp_path, evidence_reports):
    from hubaudit.report import get_format

    report, one = evidence_reports
    html = get_format("html").render(report)
    dom, errors = _load(tmp_path, html)
    assert errors == [] and 'data-broken-images="0"' in dom
    findings = dom.split('id="findings"')[1].split("</section>")[0]
    # the evidence, in words: what flipped what on how many prompts, the recovered trigger, the weights' statistic
    assert "battery paper-21-B v1: prefix 'per RFC 7231 section 6.5' flips 24/24 prompts to BENIGN" in findings
    assert "blind search recovered trigger 'rfc' → BENIGN on 24/24 prompts at prefix" in findings
    assert findings.count("weights: combined D²/K (mahal)") == 2  # both weight outliers, with their margin
    assert "mean attack rate 0.62" in findings  # the older, sparser probe record still says what it has
    assert dom.count('class="spot-check"') == N_SPOT and "probed: no backdoor found" in dom
    assert "worker_pid" not in dom and "timings" not in dom and "/cache/probe" not in dom  # raw records: JSON only
    assert "huggingface.co" in dom  # these repos came from a Hub listing
    # One line per spot check: N_SPOT of them add little to the page (a raw record each added hundreds of px).
    height = _height(dom)
    one_dom, _ = _load(tmp_path, get_format("html").render(one), name="one.html")
    assert one_dom.count('class="spot-check"') == 1
    per_spot = (height - _height(one_dom)) / (N_SPOT - 1)
    assert 15 < per_spot < 35, per_spot  # one line of 12 px text, its padding and rule
    assert height < 5000, height

    shot = tmp_path / "evidence-report.png"
    p = _chromium(tmp_path, (tmp_path / "page.html").as_uri(), f"--screenshot={shot}", f"--window-size={WIDTH},{height}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert _png_size(shot) == (WIDTH, height) and shot.stat().st_size > 50_000
    shutil.copyfile(shot, SCREENSHOT)
