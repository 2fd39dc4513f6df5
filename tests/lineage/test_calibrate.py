"""``hubaudit calibrate`` calibrates the copy/derivative similarity thresholds and stores them in the threshold set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.lineage import _store as L
from tests.lineage._vectors import at_cosine, stratum
from tests.report.test_cli import run


def _record(store, repo, n, vec, rng):
    store.record_revision(base=L.BASE, repo_id=repo, sha=L.sha(n), status="scored", scan=L.scan(vec, rng))


def test_calibrate_prints_and_stores_the_thresholds(tmp_path):
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Store.open(url, create=True) as store:
        L.build(store, calibrate=False)
    p = run("calibrate", "--base", L.BASE, "--db", url)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("Similarity thresholds:")]
    expected = ("Similarity thresholds: copy >= 0.990, derivative >= 0.800 (calibrated from 946 null pairs of "
                f"independent adapters, null max {lines[0].rsplit(' ', 1)[1]}")
    assert lines == [expected]
    with Store.open(url) as store:
        sim = store.active_threshold_set(L.BASE).params["similarity"]
    assert set(sim) == {"copy", "derivative", "null_pairs", "null_max"}
    # the copy, the derivative and the newer revision of the backdoor are in the population: the null's
    # maximum sees them, the thresholds (its 0.99 quantile) do not
    assert (sim["copy"], sim["derivative"], sim["null_pairs"]) == (0.99, 0.8, 946) and sim["null_max"] > 0.95
    j = run("calibrate", "--base", L.BASE, "--db", url, "--format", "json")
    assert json.loads(j.stdout)["similarity"] == sim | {"null_max": pytest.approx(sim["null_max"])}


def test_a_population_of_alike_adapters_raises_the_derivative_threshold(tmp_path):
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.pipeline.report import load_report
    from hubaudit.store import Store

    rng = np.random.default_rng(3)
    pop = stratum(rng, 40, 0.85, L.DIM)  # independent adapters that share much (cosines ≈ 0.72)
    bad = pop[0]
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", create=True) as store:
        for i, v in enumerate(pop):
            _record(store, L.BAD if i == 0 else f"org/a{i}", i + 1, v, rng)
        for j in range(3):  # a few real copies in the population
            _record(store, f"copies/c{j}", 100 + j, at_cosine(pop[j + 1], 0.999, rng), rng)
        _record(store, "close/derivative", 200, at_cosine(bad, 0.95, rng), rng)
        _record(store, "loose/overlap", 201, at_cosine(bad, 0.84, rng), rng)  # above the 0.8 floor, within the null's reach
        L.confirm(store, L.BAD, L.sha(1))
        summary = calibrate_base(store, L.BASE, min_n=30)
        sim = summary.similarity
        assert summary.similarity_source == "calibrated" and 0.85 < sim["derivative"] < 0.9 and sim["copy"] == 0.99
        assert sim["null_max"] > 0.99  # the planted copies are in the null, not in the thresholds
        derived = {a.repo_id: a.derived_from for a in load_report(store, L.BASE).adapters}
    assert derived["close/derivative"] is not None and derived["close/derivative"].kind == "derivative"
    assert derived["close/derivative"].threshold == pytest.approx(sim["derivative"])
    assert derived["loose/overlap"] is None
    assert all(derived[f"org/a{i}"] is None for i in range(1, 40))


def test_without_fingerprints_the_defaults_are_stored_and_said(tmp_path):
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path / 'c.db'}"
    rng = np.random.default_rng(0)
    with Store.open(url, create=True) as store:
        for i in range(35):
            _record(store, f"org/a{i}", i, None, rng)  # scored before fingerprints existed
    p = run("calibrate", "--base", L.BASE, "--db", url)
    assert p.returncode == 0, p.stderr
    assert "Similarity thresholds: copy >= 0.990, derivative >= 0.900 (defaults: 0 null pairs, too few to calibrate)" in p.stderr
    rep = json.loads(run("report", "--base", L.BASE, "--format", "json", "--db", url).stdout)
    assert rep["similarity_thresholds"] == {"copy": 0.99, "derivative": 0.9, "source": "default", "null_pairs": 0,
                                            "null_max": None}  # fmt: skip
