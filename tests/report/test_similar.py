"""``hubaudit similar REPO[@REV]|PATH``: the nearest stored adapters of a base, in-process through the
real entry point (hubaudit.cli.main.main: argument parsing, error mapping, exit codes) against real
SQLite stores.

The first store holds fingerprints built here with known pairwise similarities (unit vectors
``a·e0 + √(1-a²)·e_k``: two with different k have similarity a·a'), written through the Store API
with real verdicts and probe results. The PATH tests scan real safetensors adapters (written with
numpy) into a store and query with a reparametrised copy (B·c, A/c: the same ΔW).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.models import Fingerprint
from tests.stats._st import write_arrays, write_config
from tests.store.scans import scan as make_scan

BASE = "acme/sim-base"
OTHER = "acme/other-base"
DIM = 64
HOSTILE = "evil/x\x1b[31m[bold]red[/bold]\u202e"
FIELDS = {"repo_id", "sha", "similarity", "shared_modules", "flagged", "probe_flagged", "exact_similarity", "confirmed_by"}


def sha(i: int) -> str:
    return hashlib.sha1(str(i).encode()).hexdigest()


def fp(a: float, k: int, n_modules: int = 12) -> Fingerprint:
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[k] = a, math.sqrt(1.0 - a * a)
    return Fingerprint(FINGERPRINT_VERSION, v, n_modules)


def cli(monkeypatch, capsys, *args: str, columns: int = 100, home: Path | None = None) -> tuple[int, str, str]:
    """Run ``hubaudit ARGS`` in this process through the console-script entry point."""
    from hubaudit.cli.main import main

    monkeypatch.setattr(sys, "argv", ["hubaudit", *args])
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    if home is not None:
        monkeypatch.setenv("HUBAUDIT_HOME", str(home))
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


# (repo id, sha index, (a, k) or None for a scored revision without fingerprint, n_modules, base)
ENTRIES = [
    ("q/query", 1, (1.0, 1), 12, BASE),  # the query's older revision: e0
    ("q/query", 2, (0.97, 1), 12, BASE),  # its latest revision
    ("mallory/copy", 3, (0.99, 2), 14, BASE),
    ("org/derived", 4, (0.9, 3), 12, BASE),
    ("org/mid", 5, (0.7, 4), 10, BASE),
    ("org/low", 6, (0.45, 5), 12, BASE),
    ("org/far", 7, (0.0, 6), 12, BASE),
    (HOSTILE, 8, (0.8, 7), 12, BASE),
    ("dup/both", 9, (0.2, 8), 12, BASE),
    ("dup/both", 10, (0.2, 8), 12, OTHER),
    ("old/nofp", 11, None, 12, BASE),
    ("other/twin", 13, (1.0, 9), 12, OTHER),
    ("solo/only", 14, (1.0, 1), 12, "acme/solo-base"),  # the only fingerprinted adapter of its base
]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('similar') / 'hubaudit.db'}"
    ids = {}
    with Store.open(url, create=True) as store:
        for repo, i, vec, n, base in ENTRIES:
            s = make_scan(0.01, sha=sha(i))
            s.fingerprint = fp(*vec, n_modules=n) if vec else None
            ids[(repo, i)] = store.record_revision(base=base, repo_id=repo, sha=sha(i), status="scored", scan=s)
        store.record_revision(base=BASE, repo_id="bad/err", sha=sha(12), status="error", reason="malformed",
                              error="header length exceeds file size")  # fmt: skip
        tid = store.save_threshold_set(BASE, method="test", featureset_version=make_scan().featureset_version, n=40,
                                       strata={}, params={})  # fmt: skip
        store.save_verdicts(tid, [(ids[("mallory/copy", 3)], True, {"reasons": ["test"]}),
                                  (ids[("org/derived", 4)], False, {})])  # fmt: skip
        for repo, i, flagged in (("mallory/copy", 3, True), ("org/derived", 4, False)):
            store.enqueue_probe(ids[(repo, i)], priority=1.0)
            job = store.claim_probe_jobs("test", limit=1, lease_seconds=60)[0]
            store.finish_probe_job(job.id, {"flagged": flagged, "mean_attack_rate": 0.1, "outlier_gap": 0.1})
    return url


def _json(monkeypatch, capsys, *args: str, home: Path) -> tuple[list[dict], str]:
    code, out, err = cli(monkeypatch, capsys, "similar", *args, "--format", "json", home=home)
    assert code == 0, err
    return json.loads(out), err


def test_ranking_json_fields_and_verdicts(store_url, monkeypatch, capsys, tmp_path):
    rows, err = _json(monkeypatch, capsys, f"q/query@{sha(1)}", "--db", store_url, home=tmp_path)
    # the query is e0, so each similarity is the other vector's a (the query's own revision is left out)
    assert [(r["repo_id"], r["sha"]) for r in rows] == [
        ("mallory/copy", sha(3)), ("q/query", sha(2)), ("org/derived", sha(4)), (HOSTILE, sha(8)), ("org/mid", sha(5))]
    assert [r["similarity"] for r in rows] == pytest.approx([0.99, 0.97, 0.9, 0.8, 0.7], abs=2e-3)
    assert all(set(r) == FIELDS for r in rows)
    by = {r["repo_id"]: r for r in rows}
    assert (by["mallory/copy"]["flagged"], by["mallory/copy"]["probe_flagged"]) == (True, True)
    assert (by["org/derived"]["flagged"], by["org/derived"]["probe_flagged"]) == (False, False)
    assert (by["org/mid"]["flagged"], by["org/mid"]["probe_flagged"]) == (None, None)
    assert by["mallory/copy"]["shared_modules"] == 14 and by["org/mid"]["shared_modules"] == 10
    assert all(r["exact_similarity"] is None and r["confirmed_by"] is None for r in rows)
    assert "other/twin" not in by  # another base's identical vector is never compared
    assert f"5 of 8 stored revision(s) of {BASE} at similarity >= 0.5; showing 5" in err


def test_latest_revision_by_default_and_itself_excluded(store_url, monkeypatch, capsys, tmp_path):
    rows, _ = _json(monkeypatch, capsys, "q/query", "--db", store_url, home=tmp_path)
    assert (rows[0]["repo_id"], rows[0]["sha"]) == ("q/query", sha(1))  # the older revision of the same repo
    assert rows[0]["similarity"] == pytest.approx(0.97, abs=2e-3)
    assert ("q/query", sha(2)) not in {(r["repo_id"], r["sha"]) for r in rows}
    assert [r["repo_id"] for r in rows[1:]] == ["mallory/copy", "org/derived", HOSTILE, "org/mid"]
    # a short sha (as reports print it) names the same revision
    short, _ = _json(monkeypatch, capsys, f"q/query@{sha(2)[:12]}", "--db", store_url, home=tmp_path)
    assert short == rows


def test_top_and_min_similarity(store_url, monkeypatch, capsys, tmp_path):
    q = f"q/query@{sha(1)}"
    rows, err = _json(monkeypatch, capsys, q, "--db", store_url, "--top", "2", home=tmp_path)
    assert [r["repo_id"] for r in rows] == ["mallory/copy", "q/query"]
    assert "5 of 8 stored revision(s)" in err and "showing 2" in err
    rows, _ = _json(monkeypatch, capsys, q, "--db", store_url, "--min-similarity", "0.85", home=tmp_path)
    assert [r["repo_id"] for r in rows] == ["mallory/copy", "q/query", "org/derived"]
    rows, _ = _json(monkeypatch, capsys, q, "--db", store_url, "--min-similarity", "0.4", "--top", "100", home=tmp_path)
    assert [r["repo_id"] for r in rows][-1] == "org/low" and len(rows) == 6
    rows, _ = _json(monkeypatch, capsys, q, "--db", store_url, "--min-similarity", "0.999", home=tmp_path)
    assert rows == []
    code, _, err = cli(monkeypatch, capsys, "similar", q, "--db", store_url, "--top", "0", home=tmp_path)
    assert code == 2 and "--top" in err


def _column(table: str, name: str) -> str:
    """The cells of column ``name`` of a rich table, top to bottom, joined (undoes folding)."""
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    i = [c.strip() for c in header.split("┃")].index(name)
    return "".join(line.split("│")[i].strip() for line in lines if line.startswith("│"))


def test_table_is_width_aware_and_escapes_hostile_repo_ids(store_url, monkeypatch, capsys, tmp_path):
    for columns in (100, 60):
        code, out, err = cli(monkeypatch, capsys, "similar", f"q/query@{sha(1)}", "--db", store_url, columns=columns,
                             home=tmp_path)  # fmt: skip
        assert code == 0, err
        assert max(len(line) for line in out.splitlines()) <= columns
        assert "\x1b" not in out and "\u202e" not in out  # no raw escape or bidi character reaches the terminal
        adapters = _column(out, "adapter")
        assert adapters.startswith(f"mallory/copy@{sha(3)[:12]}q/query@{sha(2)[:12]}")
        # the hostile repo id is shown escaped, and its [bold] is text, never markup
        assert f"evil/x\\x1b[31m[bold]red[/bold]\\u202e@{sha(8)[:12]}" in adapters
        assert _column(out, "weights").startswith("FLAGGED") and _column(out, "probe").startswith("backdoor")
        assert out.startswith("nearest stored adapters of acme/sim-base to")


def test_unknown_repo_and_revisions_without_fingerprint_exit_3(store_url, monkeypatch, capsys, tmp_path):
    cases = [
        ("nobody/nothing", "Error: nobody/nothing is not in the store at", "hubaudit crawl --base"),
        ("old/nofp", "has no stored fingerprint", "hubaudit similar PATH --base acme/sim-base"),
        ("bad/err", "was not scored (malformed)", "scored"),
        (f"q/query@{sha(99)}", "is not in the store (its stored revisions:", "similar PATH"),
        ("solo/only", "the store holds no other fingerprinted adapter of acme/solo-base", "hubaudit ingest PATH"),
    ]
    for target, message, hint in cases:
        code, out, err = cli(monkeypatch, capsys, "similar", target, "--db", store_url, home=tmp_path)
        assert code == 3, (target, err)
        assert out == ""
        lines = err.splitlines()
        assert lines[0].startswith("Error: ") and message in lines[0], lines
        assert len(lines) == 2 and lines[1].startswith("Hint: ") and hint in err, lines


def test_bad_input_exits_2(store_url, monkeypatch, capsys, tmp_path):
    for args, message in (
        (("dup/both",), "dup/both is stored under several bases (acme/other-base, acme/sim-base): pass --base"),
        (("not a repo id",), "is neither an existing path nor a Hub repo id"),
        (("q/query", "--confirm", str(tmp_path)), "--confirm needs a PATH query"),
    ):
        code, out, err = cli(monkeypatch, capsys, "similar", *args, "--db", store_url, home=tmp_path)
        assert code == 2 and out == "", err
        assert err.splitlines()[0].startswith("Error: ") and message in err.splitlines()[0]
    rows, _ = _json(monkeypatch, capsys, "dup/both", "--base", BASE, "--min-similarity", "0", "--db", store_url,
                    home=tmp_path)  # fmt: skip
    assert rows and "other/twin" not in {r["repo_id"] for r in rows}


def test_missing_database_is_not_created(monkeypatch, capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'hubaudit.db'}"
    code, out, err = cli(monkeypatch, capsys, "similar", "org/name", "--db", url, home=home)
    assert code == 3 and out == ""
    assert err.startswith("Error: no hubaudit database at ") and "hubaudit crawl --base" in err.splitlines()[0]
    assert not (tmp_path / "nested").exists()
    assert os.listdir(home) == []
    code, _, err = cli(monkeypatch, capsys, "similar", "org/name", home=home)  # the default database
    assert code == 3 and os.listdir(home) == []


def test_a_read_records_nothing(store_url, monkeypatch, capsys, tmp_path):
    from hubaudit.store import Store

    db = Path(store_url.removeprefix("sqlite:///"))
    with Store.open(store_url) as store:
        runs = store.runs()
    before = {p.name for p in db.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    _json(monkeypatch, capsys, "q/query", "--db", store_url, home=tmp_path)
    with Store.open(store_url) as store:
        assert store.runs() == runs
    assert {p.name for p in db.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))} == before


# -- PATH queries: real adapters on disk -----------------------------------------------------------

LAYERS, D_MODEL, RANK = 3, 32, 4
PROJ = ("q_proj", "v_proj")


def write_adapter(directory: Path, seed: int, *, scale_b: float = 1.0, base: str | None = BASE) -> Path:
    """A PEFT LoRA adapter; ``scale_b`` multiplies B and divides A (the same ΔW = B·A)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(LAYERS):
        for p in PROJ:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{p}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.05, (RANK, D_MODEL)) / scale_b
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, 0.02, (D_MODEL, RANK)) * scale_b
    directory.mkdir(parents=True)
    write_arrays(directory / "adapter_model.safetensors", tensors)
    fields = {"r": RANK, "lora_alpha": RANK, "target_modules": list(PROJ)}
    write_config(directory, **fields, **({"base_model_name_or_path": base} if base else {}))
    return directory


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A store of five real adapters (Hub-like repo ids, weights digests as the crawler records them) plus
    the query directory itself ingested as a local adapter; and the query: a reparametrised copy of a2."""
    from hubaudit.pipeline.ingest import ingest
    from hubaudit.stats import scan_path
    from hubaudit.store import Store

    root = tmp_path_factory.mktemp("similar-path")
    url = f"sqlite:///{root / 'hubaudit.db'}"
    dirs = {i: write_adapter(root / f"a{i}", seed=i) for i in range(5)}
    query = write_adapter(root / "query", seed=2, scale_b=3.0)
    with Store.open(url, create=True) as store:
        for i, d in dirs.items():
            s = scan_path(d)
            assert s.status == "ok" and s.fingerprint is not None, s.error
            store.record_revision(base=BASE, repo_id=f"org/a{i}", sha=sha(100 + i), status="scored", scan=s,
                                  files=[{"name": "adapter_model.safetensors", "size": s.file_bytes,
                                          "sha256": s.content_sha256, "verified": True}])  # fmt: skip
        ingest(store, [query], BASE)
    return url, dirs, query


def test_path_query_finds_the_reparametrised_copy(scanned, monkeypatch, capsys, tmp_path):
    url, _, query = scanned
    rows, err = _json(monkeypatch, capsys, str(query), "--db", url, "--min-similarity", "-1", home=tmp_path)
    assert rows[0]["repo_id"] == "org/a2" and rows[0]["similarity"] == pytest.approx(1.0, abs=2e-3)
    assert all(abs(r["similarity"]) < 0.6 for r in rows[1:])  # independent random adapters
    assert [r["repo_id"] for r in rows].count("org/a2") == 1 and len(rows) == 5
    assert not any(r["repo_id"].startswith("local:") for r in rows)  # the ingested query itself is left out
    assert "of 5 stored revision(s)" in err
    assert rows[0]["shared_modules"] == LAYERS * len(PROJ)


def test_confirm_attaches_the_exact_similarity(scanned, monkeypatch, capsys, tmp_path):
    url, dirs, query = scanned
    rows, _ = _json(monkeypatch, capsys, str(query), "--db", url, "--confirm", str(dirs[2]), "--confirm", str(dirs[4]),
                    home=tmp_path)  # fmt: skip
    assert rows[0]["repo_id"] == "org/a2" and rows[0]["confirmed_by"] == str(dirs[2])
    assert rows[0]["exact_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["shared_modules"] == LAYERS * len(PROJ)
    # a4 is below --min-similarity: it comes after the ranked rows, as a local directory
    extra = rows[-1]
    assert extra["confirmed_by"] == str(dirs[4]) and extra["repo_id"] == f"local:{dirs[4]}"
    assert abs(extra["exact_similarity"]) < 0.6 and extra["similarity"] == pytest.approx(extra["exact_similarity"], abs=0.2)
    code, out, err = cli(monkeypatch, capsys, "similar", str(query), "--db", url, "--confirm", str(dirs[2]), home=tmp_path)
    assert code == 0 and "exact" in out and "1.0000" in out
    code, out, err = cli(monkeypatch, capsys, "similar", str(query), "--db", url, "--confirm", str(tmp_path / "nope"),
                         home=tmp_path)  # fmt: skip
    assert code == 2 and out == "" and "--confirm" in err.splitlines()[0]


def test_path_query_errors(scanned, monkeypatch, capsys, tmp_path):
    url, _, _ = scanned
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 8)
    write_config(broken, base_model_name_or_path=BASE)
    code, out, err = cli(monkeypatch, capsys, "similar", str(broken), "--db", url, home=tmp_path)
    assert code == 3 and out == "" and "could not be scored" in err.splitlines()[0]
    nobase = write_adapter(tmp_path / "nobase", seed=9, base=None)
    code, out, err = cli(monkeypatch, capsys, "similar", str(nobase), "--db", url, home=tmp_path)
    assert code == 2 and "pass --base" in err.splitlines()[0]
    code, out, err = cli(monkeypatch, capsys, "similar", str(nobase), "--base", "nobody/base", "--db", url, home=tmp_path)
    assert code == 3 and "base nobody/base is unknown to the store" in err.splitlines()[0]
