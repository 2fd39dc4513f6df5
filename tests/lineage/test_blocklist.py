"""``hubaudit blocklist export|import``: round trip between two stores, and hostile files refused whole."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from hubaudit.errors import InputError
from tests.lineage import _store as L
from tests.lineage._vectors import at_cosine, stratum
from tests.report.test_cli import run


@pytest.fixture(scope="module")
def source_url(tmp_path_factory) -> str:
    """The exporting team's store (tests/lineage/_store.py: a probe-confirmed adapter, its copy and derivatives)."""
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('team-a') / 'a.db'}"
    with Store.open(url, create=True) as store:
        L.build(store)
    return url


@pytest.fixture(scope="module")
def exported(source_url, tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("export") / "blocklist.json"
    p = run("blocklist", "export", "--base", L.BASE, "-o", str(out), "--db", source_url)
    assert p.returncode == 0, p.stderr
    assert "exported 4 blocklist entries" in p.stderr
    return json.loads(out.read_text()), L.vectors()


def _importer(url: str, vecs: dict) -> None:
    """Another team's store: its own independent adapters, a mirror of the exporter's copy, an unrelated one."""
    from hubaudit.store import Store

    rng = np.random.default_rng(99)
    with Store.open(url, create=True) as store:
        for i, v in enumerate(stratum(rng, 30, 0.3, L.DIM)):
            store.record_revision(base=L.BASE, repo_id=f"b{i}/indep", sha=L.sha(500 + i), status="scored", scan=L.scan(v, rng))
        store.record_revision(base=L.BASE, repo_id="mirror/copy", sha=L.sha(600), status="scored",
                              scan=L.scan(at_cosine(vecs[L.COPY], 0.995, rng), rng))  # fmt: skip
        store.record_revision(base=L.BASE, repo_id=L.TUNED, sha=L.sha(144), status="scored",  # the very revision listed
                              scan=L.scan(vecs[L.TUNED], rng))  # fmt: skip


def test_export_lists_probe_confirmed_and_derived_findings(exported):
    doc, vecs = exported
    assert (doc["format"], doc["version"], doc["base"]) == ("hubaudit-blocklist", 1, L.BASE)
    by_label = {e["label"]: e for e in doc["entries"]}
    assert set(by_label) == {f"{L.BAD}@{L.sha(1)}", f"{L.BAD}@{L.sha(2)}", f"{L.COPY}@{L.sha(143)}",
                             f"{L.TUNED}@{L.sha(144)}"}  # fmt: skip
    assert by_label[f"{L.BAD}@{L.sha(1)}"]["reason"] == "behavioural probe confirmed a backdoor"
    assert by_label[f"{L.COPY}@{L.sha(143)}"]["reason"].startswith(f"derived_from {L.BAD}@{L.sha(1)} (similarity")
    e = by_label[f"{L.COPY}@{L.sha(143)}"]
    assert (e["fingerprint_version"], e["n_modules"]) == ("fp-1", 4)
    vec = np.frombuffer(base64.b64decode(e["fingerprint"], validate=True), dtype="<f2")
    assert np.array_equal(vec, vecs[L.COPY].astype("<f2"))  # the stored float16 bytes, exactly


def test_import_makes_the_entries_sources_in_another_store(exported, tmp_path):
    doc, vecs = exported
    url = f"sqlite:///{tmp_path / 'b.db'}"
    _importer(url, vecs)
    f = tmp_path / "in.json"
    f.write_text(json.dumps(doc))
    p = run("blocklist", "import", str(f), "--base", L.BASE, "--db", url)
    assert p.returncode == 0, p.stderr
    assert "imported 4 blocklist entries" in p.stderr and "(4 new, 0 replaced)" in p.stderr
    rep = json.loads(run("report", "--base", L.BASE, "--format", "json", "--db", url).stdout)
    by_repo = {a["repo_id"]: a for a in rep["adapters"]}
    mirror = by_repo["mirror/copy"]["derived_from"]
    assert (mirror["source_repo_id"], mirror["source_sha"], mirror["source_kind"], mirror["kind"]) == (
        L.COPY, L.sha(143), "blocklist", "copy")
    # a revision the list names matches another entry better than its own: that one is its source
    listed = by_repo[L.TUNED]["derived_from"]
    assert (listed["source_repo_id"], listed["source_sha"], listed["source_kind"]) == (L.BAD, L.sha(1), "blocklist")
    assert all(by_repo[f"b{i}/indep"]["derived_from"] is None for i in range(30))
    assert rep["summary"]["derived"] == 2
    c = run("check", "mirror/copy", "--offline", "--format", "json", "--db", url)
    assert c.returncode == 1 and json.loads(c.stdout)["reasons"][0].startswith(f"derived_from {L.COPY}@{L.sha(143)}")
    again = run("blocklist", "import", str(f), "--base", L.BASE, "--db", url)
    assert again.returncode == 0 and "(0 new, 4 replaced)" in again.stderr


def test_a_revision_the_list_names_is_flagged_by_its_own_entry(exported, tmp_path):
    doc, vecs = exported
    url = f"sqlite:///{tmp_path / 'b.db'}"
    _importer(url, vecs)
    f = tmp_path / "one.json"
    f.write_text(json.dumps(doc | {"entries": [e for e in doc["entries"] if e["label"] == f"{L.TUNED}@{L.sha(144)}"]}))
    assert run("blocklist", "import", str(f), "--base", L.BASE, "--db", url).returncode == 0
    rep = json.loads(run("report", "--base", L.BASE, "--format", "json", "--db", url).stdout)
    by_repo = {a["repo_id"]: a for a in rep["adapters"]}
    own = by_repo[L.TUNED]["derived_from"]
    assert (own["source_repo_id"], own["source_sha"], own["kind"], own["source_kind"]) == (L.TUNED, L.sha(144), "copy", "blocklist")
    mirror = by_repo["mirror/copy"]["derived_from"]  # shares the backdoor's component: cosine ≈ 0.93·0.998·0.995
    assert (mirror["source_repo_id"], mirror["kind"]) == (L.TUNED, "derivative") and mirror["similarity"] < 0.99
    assert all(by_repo[f"b{i}/indep"]["derived_from"] is None for i in range(30))
    assert rep["similarity_thresholds"]["source"] == "default"  # not calibrated: the defaults (0.99/0.9)


def test_reimporting_ones_own_export_changes_no_source(exported, source_url, tmp_path):
    from hubaudit.pipeline.blocklist import import_blocklist
    from hubaudit.pipeline.report import load_report
    from hubaudit.store import Store

    doc, _ = exported
    f = tmp_path / "own.json"
    f.write_text(json.dumps(doc))
    with Store.open(source_url) as store:
        before = {a.repo_id: a.derived_from for a in load_report(store, L.BASE).adapters}
        assert import_blocklist(store, L.BASE, f) == (4, 4)
        after = {a.repo_id: a.derived_from for a in load_report(store, L.BASE).adapters}
        assert store.blocklist(L.BASE)[0].source.startswith("import sha256:")  # the file's digest, not its path
    # every derived finding keeps its probe-confirmed source: none becomes its own source
    for repo in (L.COPY, L.TUNED, L.BAD):
        assert (after[repo].source_repo_id, after[repo].source_sha) == (L.BAD, L.sha(1)), repo
        assert after[repo].source_kind == before[repo].source_kind == "probe_confirmed"


def _good_entry(label="org/x@" + "a" * 40, dim=L.DIM, seed=0) -> dict:
    v = np.random.default_rng(seed).standard_normal(dim)
    v /= np.linalg.norm(v)
    return {"label": label, "reason": "confirmed", "fingerprint_version": "fp-1", "n_modules": 4,
            "fingerprint": base64.b64encode(v.astype("<f2").tobytes()).decode()}


def _doc(*entries, **top) -> dict:
    return {"format": "hubaudit-blocklist", "version": 1, "base": L.BASE, "entries": list(entries)} | top


def _fp(values) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f2").tobytes()).decode()


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _hostile() -> list[tuple[str, bytes]]:
    good = _good_entry()
    canon = good["fingerprint"]
    assert canon.endswith("=") and not canon.endswith("==")
    nan = np.zeros(L.DIM)
    nan[3] = np.nan
    inf = np.zeros(L.DIM)
    inf[0] = np.inf
    big = np.full(L.DIM, 1.0)
    docs = {
        "not json": b"{not json",
        "not utf-8": b'{"format": "\xff"}',
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "NaN literal": json.dumps(_doc(good)).replace('"version": 1', '"version": NaN').encode(),
        "duplicate key": b'{"format": "hubaudit-blocklist", "format": "hubaudit-blocklist", "version": 1}',
        "wrong format": json.dumps(_doc(good, format="other")).encode(),
        "version 2": json.dumps(_doc(good, version=2)).encode(),
        "version true": json.dumps(_doc(good, version=True)).encode(),
        "version 1.0": json.dumps(_doc(good, version=1.0)).encode(),
        "other base": json.dumps(_doc(good, base="meta-llama/Llama-3.2-1B")).encode(),
        "unknown top key": json.dumps(_doc(good, extra=1)).encode(),
        "entries not a list": json.dumps(_doc() | {"entries": {"a": 1}}).encode(),
        "entry not an object": json.dumps(_doc("org/x@abc")).encode(),
        "unknown entry key": json.dumps(_doc(good | {"run": "rm -rf /"})).encode(),
        "missing entry key": json.dumps(_doc({k: v for k, v in good.items() if k != "n_modules"})).encode(),
        "duplicate label": json.dumps(_doc(good, _good_entry(seed=1))).encode(),
        "fingerprint version": json.dumps(_doc(good | {"fingerprint_version": "fp-2"})).encode(),
        "short fingerprint": json.dumps(_doc(good | {"fingerprint": _fp(np.ones(512) / np.sqrt(512))})).encode(),
        "not base64": json.dumps(_doc(good | {"fingerprint": "!" + canon[1:]})).encode(),
        "base64 with a newline": json.dumps(_doc(good | {"fingerprint": canon[:-4] + "\n" + canon[-3:]})).encode(),
        # 2·1024 bytes end in one "=": the character before it carries 2 unused bits, set one of them
        "non-canonical padding": json.dumps(_doc(good | {"fingerprint": canon[:-2] + B64[B64.index(canon[-2]) | 1] + "="})).encode(),
        "NaN value": json.dumps(_doc(good | {"fingerprint": _fp(nan)})).encode(),
        "inf value": json.dumps(_doc(good | {"fingerprint": _fp(inf)})).encode(),
        "zero vector": json.dumps(_doc(good | {"fingerprint": _fp(np.zeros(L.DIM))})).encode(),
        "not unit": json.dumps(_doc(good | {"fingerprint": _fp(big)})).encode(),
        "n_modules 0": json.dumps(_doc(good | {"n_modules": 0})).encode(),
        "n_modules bool": json.dumps(_doc(good | {"n_modules": True})).encode(),
        "n_modules float": json.dumps(_doc(good | {"n_modules": 1.5})).encode(),
        "reason with an escape": json.dumps(_doc(good | {"reason": "ok\x1b[2J"})).encode(),
        "reason too long": json.dumps(_doc(good | {"reason": "x" * 501})).encode(),
    }
    for label in ("", "x" * 201, "org/x y@abc1234", "<script>@abc1234", "org/x\n@abc1234", "-rf@abc1234",
                  "org/\u202ex@abc1234", "[/]@abc1234"):
        docs[f"label {label!r}"] = json.dumps(_doc(good | {"label": label})).encode()
    docs["one bad entry among good ones"] = json.dumps(_doc(_good_entry("a/b@" + "1" * 40, seed=2), good | {"n_modules": -1})).encode()
    return list(docs.items())


@pytest.mark.parametrize(("name", "data"), _hostile(), ids=[n for n, _ in _hostile()])
def test_hostile_file_is_refused_whole(name, data, tmp_path):
    from hubaudit.pipeline.blocklist import import_blocklist
    from hubaudit.store import Store

    f = tmp_path / "hostile.json"
    f.write_bytes(data)
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", create=True) as store:
        with pytest.raises(InputError) as exc:
            import_blocklist(store, L.BASE, f)
        assert "\n" not in str(exc.value) and str(exc.value).startswith(str(f))
        assert store.blocklist(L.BASE) == []


def test_a_good_file_imports_into_an_empty_store_with_this_hubaudits_dimension(tmp_path):
    from hubaudit.pipeline.blocklist import import_blocklist
    from hubaudit.store import Store

    f = tmp_path / "good.json"
    f.write_text(json.dumps(_doc(_good_entry(), _good_entry("local@" + "b" * 64, seed=3))))
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", create=True) as store:
        assert import_blocklist(store, L.BASE, f) == (2, 2)
        rows = store.blocklist(L.BASE)
        assert [r.label for r in rows] == ["org/x@" + "a" * 40, "local@" + "b" * 64]
        assert all(abs(float(np.linalg.norm(r.fingerprint.vec)) - 1) < 2e-3 for r in rows)  # re-normalised


def test_size_cap(tmp_path, monkeypatch):
    from hubaudit.pipeline import blocklist
    from hubaudit.store import Store

    f = tmp_path / "big.json"
    f.write_text(json.dumps(_doc(_good_entry())))
    monkeypatch.setattr(blocklist, "MAX_FILE_BYTES", 1000)
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}", create=True) as store, pytest.raises(InputError, match="cap"):
        blocklist.import_blocklist(store, L.BASE, f)


def test_cli_bad_file_is_one_line_exit_2(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(_doc(_good_entry() | {"label": "<img src=x>\u001b[31m@abc1234"})))
    for target in (str(f), str(tmp_path / "missing.json")):
        p = run("blocklist", "import", target, "--base", L.BASE, "--db", url)
        assert p.returncode == 2, p.stderr
        assert p.stdout == "" and "Traceback" not in p.stderr and "\x1b" not in p.stderr
        assert p.stderr.startswith("Error: ") and p.stderr.count("Error:") == 1
    assert "nothing was imported" in p.stderr or "cannot read" in p.stderr
