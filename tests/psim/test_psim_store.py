"""PSIM's τ versioned in the store as a ``psim`` behavioural calibration of a base, beside the probe and
τ_search thresholds: `psim train --base` and `psim calibrate --base` store it with what it was fitted
on (target FRR, n clean rows, the PSIM module's sha256); `psim screen|probe --base` run under the
newest one when it was fitted on the same module (else exit 2, one line), and every screen names the
calibration in force: the store's row, the model folder, or an explicit --tau.

A tiny real PSIM (LoRA, one epoch on the 2-layer BERT of conftest.py) trained through the CLI; the
store round trip runs on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hubaudit.errors import InputError
from hubaudit.pipeline.behaviour import resolve_psim_tau, save_psim_calibration
from hubaudit.psim.threshold import PsimTau
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from hubaudit.vocab import CalibrationKind, CalibrationOrigin
from tests.psim.test_cli import assert_one_line_error, hubaudit
from tests.store.conftest import _pg_template, migrated_pg_url, pg_server  # noqa: F401 (fixtures)

BASE = "acme/psim-base"
TRAIN = ("--peft", "lora", "--epochs", "1", "--max-length", "32")


def _sha256(psim_dir: Path) -> str:
    return hashlib.sha256((psim_dir / "psim_adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tiny_base, task_data, tmp_path_factory):
    """A PSIM trained with --base: (PSIM_DIR, the SQLite file it stored τ in, the train command's stderr)."""
    root = tmp_path_factory.mktemp("psim-store")
    out, db = root / "psim", root / "h.db"
    p = hubaudit("psim", "train", "--model", tiny_base, "--data", task_data, *TRAIN, "-o", out, "--base", BASE,
                 "--db", sqlite_url(db))
    assert p.returncode == 0, p.stderr
    return out, db, p.stderr


@pytest.fixture
def db(trained, tmp_path) -> str:
    """A copy of the database the PSIM stored its τ in (one version for BASE), for this test alone."""
    shutil.copyfile(trained[1], tmp_path / "h.db")
    return sqlite_url(tmp_path / "h.db")


def _screen(psim_dir, data, *args):
    p = hubaudit("psim", "screen", psim_dir, "--data", data, "--format", "json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["summary"]


def test_train_base_stores_tau_with_what_it_was_fitted_on(trained, db):
    psim_dir, _, stderr = trained
    meta = json.loads((psim_dir / "psim.json").read_text())
    with Store.open(db) as store:
        rows = store.behaviour.behaviour_calibrations(BASE, CalibrationKind.PSIM)
    assert [(r.kind, r.version) for r in rows] == [("psim", 1)]
    tau = PsimTau.from_dict(rows[0].thresholds)
    assert (tau.tau, tau.target_frr, tau.n_clean) == (meta["tau"], 0.05, meta["calibration"]["n"]) == (tau.tau, 0.05, 40)
    assert tau.psim_sha256 == meta["psim_sha256"] == _sha256(psim_dir)
    assert rows[0].n_clean == 40 and rows[0].source == tau.source and "40 clean rows" in tau.source
    assert f"stored as {BASE}'s PSIM calibration store #{rows[0].id} v1 of " in stderr
    assert PsimTau.from_dict(tau.to_dict()) == tau


def test_screen_names_the_calibration_in_force(trained, db, task_data):
    psim_dir, _, _ = trained
    meta = json.loads((psim_dir / "psim.json").read_text())
    with Store.open(db) as store:
        row = store.behaviour.behaviour_calibration(BASE, "psim")
    stored = _screen(psim_dir, task_data, "--base", BASE, "--db", db)
    assert stored["calibration"] | {"created_at": None} == {
        "kind": "psim", "origin": "store", "id": row.id, "version": 1, "created_at": None, "fingerprint": row.fingerprint,
        "path": None, "source": row.source}
    folder = _screen(psim_dir, task_data)
    assert folder["calibration"]["origin"] == "model_dir" and folder["calibration"]["path"] == str(psim_dir)
    assert folder["tau"] == stored["tau"] == meta["tau"]
    explicit = _screen(psim_dir, task_data, "--tau", "0.9", "--base", BASE, "--db", db)
    assert (explicit["calibration"]["origin"], explicit["calibration"]["source"], explicit["tau"]) == ("explicit", "--tau 0.9", 0.9)
    t = hubaudit("psim", "screen", psim_dir, "--data", task_data, "--base", BASE, "--db", db)
    assert t.returncode == 0 and t.stdout.splitlines()[0].split() == ["index", "confidence", "flagged", "text"]
    assert f"tau from store #{row.id} v1 of " in t.stderr
    assert f"tau from model folder {psim_dir}" in hubaudit("psim", "screen", psim_dir, "--data", task_data).stderr


def test_calibrate_adds_a_version_and_the_newest_is_in_force(trained, db, task_data):
    psim_dir, _, _ = trained
    before = (psim_dir / "psim.json").read_text()
    dry = hubaudit("psim", "calibrate", psim_dir, "--data", task_data, "--target-frr", "0.5")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["stored"] is None and "not stored (give --base BASE)" in dry.stderr
    p = hubaudit("psim", "calibrate", psim_dir, "--data", task_data, "--target-frr", "0.5", "--base", BASE, "--db", db)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["stored"]["version"] == 2 and doc["n_clean"] == 200 and doc["target_frr"] == 0.5
    assert doc["psim_sha256"] == _sha256(psim_dir) and doc["frr_at_tau"] <= 0.5
    assert (psim_dir / "psim.json").read_text() == before  # the model folder keeps its own τ
    summary = _screen(psim_dir, task_data, "--base", BASE, "--db", db)
    assert (summary["calibration"]["id"], summary["calibration"]["version"]) == (doc["stored"]["id"], 2)
    assert (summary["tau"], summary["target_frr"]) == (doc["tau"], 0.5)
    assert summary["flagged"] <= 100  # its own clean rows, at most half of them above τ
    probe = hubaudit("psim", "probe", psim_dir, "--data", task_data, "--probe", "cf", "--limit", "10", "--format", "json",
                     "--base", BASE, "--db", db)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["summary"]["calibration"]["version"] == 2


def test_a_calibration_fitted_on_another_psim_is_refused(trained, db, tiny_base, task_data, tmp_path):
    psim_dir, _, _ = trained
    other = tmp_path / "other"
    p = hubaudit("psim", "train", "--model", tiny_base, "--data", task_data, *TRAIN, "--seed", "1", "-o", other,
                 "--base", BASE, "--db", db)
    assert p.returncode == 0, p.stderr
    assert _sha256(other) != _sha256(psim_dir)
    for cmd in (["screen"], ["probe", "--probe", "cf"]):
        r = hubaudit("psim", *cmd, psim_dir, "--data", task_data, "--base", BASE, "--db", db)
        assert_one_line_error(r, 2, f"the newest PSIM calibration of {BASE} (store #")
        assert "fitted on another PSIM module" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _screen(other, task_data, "--base", BASE, "--db", db)["calibration"]["version"] == 2
    assert _screen(psim_dir, task_data, "--base", BASE, "--db", db, "--tau", "0.8")["calibration"]["origin"] == "explicit"


def test_a_base_without_a_psim_calibration_uses_the_folder_with_a_notice(trained, db, task_data, tmp_path):
    psim_dir, _, _ = trained
    p = hubaudit("psim", "screen", psim_dir, "--data", task_data, "--format", "json", "--base", "acme/other", "--db", db)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"]["calibration"]["origin"] == "model_dir"
    assert [line for line in p.stderr.splitlines() if line.startswith("Notice:")] == [
        f"Notice: no PSIM calibration of acme/other in the store: tau from the model folder {psim_dir}"]
    missing = hubaudit("psim", "screen", psim_dir, "--data", task_data, "--base", BASE, "--db", sqlite_url(tmp_path / "none.db"))
    assert_one_line_error(missing, 3, "no hubaudit database")


def test_a_folder_written_before_the_fingerprint_still_screens_and_stores(trained, db, task_data, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained[0], old)
    meta = json.loads((old / "psim.json").read_text())
    del meta["psim_sha256"]
    (old / "psim.json").write_text(json.dumps(meta))
    assert _screen(old, task_data, "--base", BASE, "--db", db)["calibration"]["origin"] == "store"
    p = hubaudit("psim", "calibrate", old, "--data", task_data, "--base", BASE, "--db", db)
    assert p.returncode == 0 and json.loads(p.stdout)["psim_sha256"] == _sha256(trained[0])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path, migrated_sqlite):
    url = migrated_sqlite(tmp_path / "h.db") if request.param == "sqlite" else request.getfixturevalue("migrated_pg_url")
    with Store.open(url) as s:
        yield s


def _tau(tau: float, sha: str = "a" * 64, frr: float = 0.05) -> PsimTau:
    return PsimTau(tau=tau, target_frr=frr, n_clean=40, psim_sha256=sha, frr_at_tau=0.025, model="/m", source=f"fit {tau}")


def test_store_round_trip_newest_wins_and_mismatch_is_refused(store):
    folder = _tau(0.6)
    first = save_psim_calibration(store, BASE, _tau(0.7))
    second = save_psim_calibration(store, BASE, _tau(0.8, frr=0.1))
    save_psim_calibration(store, "acme/other", _tau(0.9, sha="b" * 64))
    assert (first.version, second.version, second.origin, second.kind) == (1, 2, CalibrationOrigin.STORE, "psim")
    got = resolve_psim_tau(folder, "/psim", base=BASE, store=store)
    assert got.value == _tau(0.8, frr=0.1) and got.ref == second and got.notice is None
    assert [PsimTau.from_dict(r.thresholds).tau for r in store.behaviour.behaviour_calibrations(BASE, "psim")] == [0.7, 0.8]
    assert resolve_psim_tau(folder, "/psim").ref.origin == CalibrationOrigin.MODEL_DIR
    assert resolve_psim_tau(folder, "/psim", explicit=0.95, base="acme/other", store=store).value.tau == 0.95
    with pytest.raises(InputError, match=r"fitted on another PSIM module \(sha256 bbbbbbbbbbbb, /psim has aaaaaaaaaaaa\)"):
        resolve_psim_tau(folder, "/psim", base="acme/other", store=store)
    store.behaviour.save_behaviour_calibration(BASE, "psim", {"tau": 0.5}, source="hand-written", n_clean=1)
    with pytest.raises(InputError, match="is unreadable: not a PSIM calibration"):
        resolve_psim_tau(folder, "/psim", base=BASE, store=store)
