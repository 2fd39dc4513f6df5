"""Every ``report`` format, every ``export`` format and ``status`` on one rich store, byte for byte.

The store, the commands and the normalisation are tests/report/golden.py's: the outputs of the CLI (run
in-process through the real entry point, table at 100 columns) on the golden store, normalised, must
equal the files under tests/report/golden/. A refactoring that changes no output keeps this test green;
any change of output, deliberate or not, shows here as a unified diff.

Normalised before the comparison (and nothing else): see ``golden.NORMALISATION``: the generation time
the CLI takes from the system clock, and the CycloneDX serial number derived from it.

Regenerate the golden files after a deliberate change of output, then review them with ``git diff``::

    HUBAUDIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/report/test_report_golden.py
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests._cli import run_cli
from tests.report import golden

GOLDEN_DIR = Path(__file__).with_name("golden")
UPDATE = os.environ.get("HUBAUDIT_UPDATE_GOLDEN") == "1"
CASES = list(golden.cases())
REGENERATE = "if the change is deliberate, regenerate: HUBAUDIT_UPDATE_GOLDEN=1 pytest tests/report/test_report_golden.py"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """The golden store and its suppression file (built once for the module; the commands only read it)."""
    directory = tmp_path_factory.mktemp("golden")
    golden.build_in_subprocess(directory)
    return directory


def render(case: golden.Case, directory: Path) -> str:
    """The normalised stdout of ``case`` run in ``directory`` (exit 0 required)."""
    started = datetime.now(timezone.utc)
    r = run_cli(*case.args, env=golden.ENV, cwd=directory)
    ended = datetime.now(timezone.utc)
    assert r.returncode == 0, r.stderr
    text = golden.normalise(r.stdout, started, ended)
    missed = golden.leftover_dates(text, started, ended)
    assert not missed, f"{case.name}: today's date {missed} is still in the output: a clock reading normalise() missed"
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_output_matches_golden(case, store_dir):
    actual = render(case, store_dir)
    path = GOLDEN_DIR / case.name
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}; "
                    f"{REGENERATE}", pytrace=False)  # fmt: skip
    expected = path.read_bytes()
    if actual.encode("utf-8") != expected:
        diff = golden.unified_diff(expected.decode("utf-8"), actual, case.name)
        pytest.fail(f"{case.name} differs from its golden file:\n{diff or '(the same lines: line endings or encoding differ)'}\n"
                    f"{REGENERATE}", pytrace=False)  # fmt: skip


def test_every_golden_file_belongs_to_a_case():
    """A format taken out of a registry takes its golden file with it (removed here on regeneration)."""
    names = {c.name for c in CASES}
    stale = sorted(p.name for p in GOLDEN_DIR.iterdir() if p.name not in names and not p.name.startswith("."))
    if UPDATE:
        for name in stale:
            (GOLDEN_DIR / name).unlink()
        return
    assert not stale, f"golden files without a case: {stale}; {REGENERATE}"


def test_normalisation_touches_only_the_run_and_the_serial():
    """The generation time is replaced only within the run's bounds; stored timestamps stay."""
    started = datetime(2030, 1, 2, 3, 4, 30, tzinfo=timezone.utc)
    ended = datetime(2030, 1, 2, 3, 5, 1, tzinfo=timezone.utc)
    text = ('"generated_at": "2030-01-02T03:04:59.123456+00:00", "first_seen": "2025-06-02T08:00:00+00:00"\n'
            "report · 2030-01-02 03:04 UTC · fitted 2025-06-02 08:00 UTC · 2030-01-02 03:06 UTC\n"
            '"serialNumber": "urn:uuid:0b9e6c1c-4a43-5b8e-9d1c-0123456789ab"\n')  # fmt: skip
    assert golden.normalise(text, started, ended) == (
        '"generated_at": "<GENERATED_AT>", "first_seen": "2025-06-02T08:00:00+00:00"\n'
        "report · <GENERATED_AT> UTC · fitted 2025-06-02 08:00 UTC · 2030-01-02 03:06 UTC\n"
        '"serialNumber": "urn:uuid:<SERIAL>"\n'
    )  # fmt: skip
