"""``--format cyclonedx``: CycloneDX 1.6 SBOM + VEX, validated against the official JSON schema.

The schemas are vendored, unchanged except as noted, from the PyPI package cyclonedx-python-lib 11.12.0
(``cyclonedx/schema/_res/``; CycloneDX specification commit b29bae660048e0ad2fbc5f2972927b442ce951c4;
Apache-2.0): ``bom-1.6.schema.json`` (that package's ``bom-1.6.SNAPSHOT.schema.json``, its two
``$ref`` to the ``.SNAPSHOT`` file names set back to the upstream names ``spdx.schema.json`` and
``jsf-0.82.schema.json``; the package had already dropped the ``$schema`` enum and made ``version``
optional), ``spdx.schema.json`` and ``jsf-0.82.schema.json``. The ``$ref`` between them resolve
offline, through a ``referencing`` registry keyed by each schema's ``$id``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from hubaudit.cli.report import ExportFormat
from hubaudit.report import get_format
from hubaudit.report.export import EXPORT_FORMATS, render_export
from hubaudit.report.formats.cyclonedx import purl, vulnerability_id
from hubaudit.report.model import DerivedFrom, DownstreamRepo, HubSecurity, Suppression, hub_url, is_hub_repo_id
from tests.report import sample as S
from tests.report.conftest import BASE as STORE_BASE
from tests.report.conftest import OUTLIERS, write_lora
from tests.report.hostile import HOSTILE_SETTINGS, controls, hostile_text, hostile_text_surrogates

HERE = Path(__file__).parent
_SCHEMAS = [json.loads((HERE / n).read_text()) for n in ("bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json")]
_REGISTRY = Registry().with_resources((s["$id"], Resource.from_contents(s, default_specification=DRAFT7)) for s in _SCHEMAS)
VALIDATOR = jsonschema.Draft7Validator(_SCHEMAS[0], registry=_REGISTRY, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
SHA256_A, SHA256_B = "ab" * 32, "CD" * 32
LOCAL = "local:/data/adapters/team-a lora"
_HEX40 = "0123456789abcdef0123456789abcdef01234567"


def validate(doc: dict) -> None:
    """Schema-valid, plus what jsonschema's format checker leaves out here (date-time) and bom-ref integrity."""
    VALIDATOR.validate(doc)
    datetime.fromisoformat(doc["metadata"]["timestamp"].replace("Z", "+00:00"))
    refs = [doc["metadata"]["component"]["bom-ref"]] + [c["bom-ref"] for c in doc["components"]]
    refs += [v["bom-ref"] for v in doc["vulnerabilities"]]
    assert len(refs) == len(set(refs)), "bom-refs must be unique"
    components = set(refs[: 1 + len(doc["components"])])
    assert {d["ref"] for d in doc["dependencies"]} <= components
    assert all(set(d.get("dependsOn", ())) <= components for d in doc["dependencies"])
    assert all(a["ref"] in components for v in doc["vulnerabilities"] for a in v["affects"])


def props(obj: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in obj.get("properties", ()):
        out.setdefault(p["name"].removeprefix("hubaudit:"), []).append(p["value"])
    return out


def prop(obj: dict, name: str) -> str | None:
    values = props(obj).get(name)
    return values[0] if values else None


def by_repo(doc: dict) -> dict[str, dict]:
    return {prop(c, "repo_id"): c for c in doc["components"]}


def vulns_of(doc: dict, component: dict) -> dict[str, dict]:
    """The vulnerabilities affecting one component, by kind (WEIGHTS, PROBE, DERIVED)."""
    return {v["id"].split("-")[1]: v for v in doc["vulnerabilities"] if component["bom-ref"] in {a["ref"] for a in v["affects"]}}


def sample_report(**kw):
    """sample.py's population plus a local adapter, stored files, two derived findings and a Hub scan status."""
    rows = S.population_rows()
    rows.append(S.row(50, score=0.012, flagged=False, margin=-0.004, repo=LOCAL))
    rows[-1]["sha"] = hashlib.sha256(b"local weights").hexdigest()  # local ingests: the weights' sha256
    files = [{"name": "adapter_model.safetensors", "size": 1234, "sha256": SHA256_A},
             {"name": "adapter_config.json", "size": 321, "sha256": SHA256_B},
             {"name": "README.md", "size": 9, "sha256": "not-a-digest"}]  # fmt: skip
    for r in rows:
        if r["repo_id"] in ("evil/sentiment-lora", LOCAL):
            r["files"] = files
    report = S.sample_report(rows=rows, **kw)
    extra = {
        "org2/adapter-2": dict(derived_from=DerivedFrom("evil/probe-confirmed", S.sha(31), 0.991, "copy", "probe_confirmed", 0.95),
                               downstream=(DownstreamRepo("someone/merged-model", "merge"),)),
        "org0/adapter-3": dict(derived_from=DerivedFrom("evil/sentiment-lora", None, 0.83, "derivative", "weights_flagged", 0.8)),
        "org1/adapter-4": dict(hub_security=HubSecurity(True, (("adapter_model.safetensors", "unsafe"),))),
    }  # fmt: skip
    return replace(report, adapters=tuple(replace(e, **extra.get(e.repo_id, {})) for e in report.adapters))


def render(report) -> dict:
    text = get_format("cyclonedx").render(report)
    assert text.endswith("\n") and not controls(text)
    return json.loads(text)


# ---------------------------------------------------------------- the schema itself


def test_vendored_schema_resolves_spdx_and_jsf_offline():
    doc = render(sample_report())
    licensed = json.loads(json.dumps(doc))
    licensed["components"][0]["licenses"] = [{"license": {"id": "Apache-2.0"}}]
    VALIDATOR.validate(licensed)
    licensed["components"][0]["licenses"] = [{"license": {"id": "Not-A-License-Id"}}]  # spdx.schema.json's enum
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(licensed)
    signed = json.loads(json.dumps(doc))
    # jsf-0.82.schema.json's signer (a URI algorithm: without a "uri" format checker "ES256" matches two branches)
    signed["signature"] = {"algorithm": "https://example.org/alg", "value": "x"}
    VALIDATOR.validate(signed)
    signed["signature"] = {"algorithm": "https://example.org/alg"}  # no value
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(signed)


def test_machine_learning_model_is_a_1_6_component_type():
    assert "machine-learning-model" in _SCHEMAS[0]["definitions"]["component"]["properties"]["type"]["enum"]


# ---------------------------------------------------------------- mapping


def test_sample_report_is_valid_cyclonedx_1_6():
    report = sample_report()
    doc = render(report)
    validate(doc)
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.6", 1)
    assert doc["metadata"]["timestamp"] == "2026-11-25T09:00:00Z"
    assert doc["metadata"]["tools"]["components"] == [{"type": "application", "name": "hubaudit", "version": "0.1.0"}]
    base = doc["metadata"]["component"]
    assert base["type"] == "machine-learning-model" and base["bom-ref"] == base["purl"] == f"pkg:huggingface/{S.BASE}"
    assert (base["group"], base["name"]) == tuple(S.BASE.split("/"))
    assert len(doc["components"]) == len(report.adapters)
    assert all(c["type"] == "machine-learning-model" for c in doc["components"])
    assert doc["dependencies"] == [{"ref": c["bom-ref"], "dependsOn": [base["bom-ref"]]} for c in doc["components"]]
    meta = props(doc["metadata"])
    assert meta["calibration_version"] == ["3"] and meta["population"] == [str(report.summary.population)]
    assert meta["expired_suppression"] == [f"evil/sentiment-lora@{S.sha(30)[:10]} expired 2026-10-01"]


def test_clean_adapter_has_purl_hub_link_and_no_vulnerability():
    doc = render(sample_report())
    clean = by_repo(doc)["org1/adapter-1"]
    ref = f"pkg:huggingface/org1/adapter-1@{S.sha(1)}"
    assert clean["bom-ref"] == clean["purl"] == ref
    assert (clean["group"], clean["name"], clean["version"]) == ("org1", "adapter-1", S.sha(1))
    assert clean["externalReferences"] == [{"type": "distribution", "url": f"https://huggingface.co/org1/adapter-1/tree/{S.sha(1)}"}]
    assert prop(clean, "verdict") == "pass" and prop(clean, "flagged") == "false" and prop(clean, "findings") is None
    assert prop(clean, "score") == "0.0102" and prop(clean, "stratum") == S.STRATUM
    assert vulns_of(doc, clean) == {}


def test_weight_flag_is_in_triage_with_its_evidence():
    doc = render(sample_report())
    evil = by_repo(doc)["evil/sentiment-lora"]
    assert prop(evil, "verdict") == "flagged" and prop(evil, "findings") == "weights"
    vulns = vulns_of(doc, evil)
    assert set(vulns) == {"WEIGHTS"}
    v = vulns["WEIGHTS"]
    assert v["id"] == v["bom-ref"] == vulnerability_id("WEIGHTS", "evil/sentiment-lora", S.sha(30))
    assert re.fullmatch(r"HUBAUDIT-WEIGHTS-[0-9a-f]{12}", v["id"])
    assert v["source"] == {"name": "hubaudit"} and v["ratings"][0]["severity"] == "high"
    assert v["analysis"] == {"state": "in_triage"}  # its suppression expired: no response
    assert "global_frobN_std, layer_concentration" in v["description"] and "+0.011 σ" in v["description"]
    assert v["detail"] == "global_frobN_std\nlayer_concentration"
    assert prop(v, "suppressed") == "false"


def test_probe_confirmed_is_exploitable_and_critical():
    doc = render(sample_report())
    vulns = vulns_of(doc, by_repo(doc)["evil/probe-confirmed"])
    assert set(vulns) == {"WEIGHTS", "PROBE"}
    probe = vulns["PROBE"]
    assert probe["analysis"] == {"state": "exploitable"} and probe["ratings"][0]["severity"] == "critical"
    assert "mean_attack_rate=0.61" in probe["description"] and "outlier_gap=0.34" in probe["detail"]
    assert vulns["WEIGHTS"]["analysis"]["state"] == "in_triage"


def test_derived_findings_follow_their_source():
    doc = render(sample_report())
    comps = by_repo(doc)
    copy = comps["org2/adapter-2"]
    assert prop(copy, "verdict") == "flagged" and prop(copy, "findings") == "derived"
    assert props(copy)["downstream"] == ["merge someone/merged-model"]
    v = vulns_of(doc, copy)["DERIVED"]
    reason = f"derived_from evil/probe-confirmed@{S.sha(31)} (similarity 0.991, copy)"
    assert prop(copy, "derived_from") == reason and v["detail"] == reason and reason in v["description"]
    assert v["analysis"] == {"state": "exploitable"} and v["ratings"][0]["severity"] == "critical"
    deriv = vulns_of(doc, comps["org0/adapter-3"])["DERIVED"]
    assert deriv["analysis"] == {"state": "in_triage"} and deriv["ratings"][0]["severity"] == "medium"
    assert "derivative of a weight-flagged adapter" in deriv["description"]


def test_suppressed_finding_keeps_its_state_and_says_why():
    doc = render(sample_report())
    fp = by_repo(doc)["reviewed/false-positive"]
    assert prop(fp, "verdict") == "suppressed" and prop(fp, "suppressed_until") == "2027-01-31"
    v = vulns_of(doc, fp)["WEIGHTS"]
    assert v["analysis"]["state"] == "in_triage"  # accepted risk, not false_positive / not_affected
    assert v["analysis"]["response"] == ["will_not_fix"]
    assert "2027-01-31" in v["analysis"]["detail"] and "reviewed: lr=1e-3 run, probes clean" in v["analysis"]["detail"]
    assert prop(v, "suppressed") == "true"


def test_not_audited_adapters_are_listed_with_why_never_clean():
    doc = render(sample_report())
    comps = by_repo(doc)
    for repo, status, reason in (("old/pickle-adapter", "unsupported", "pickle_format"), ("corp/gated-adapter", "skipped", "gated"),
                                 ("bad/malformed", "error", "malformed")):  # fmt: skip
        c = comps[repo]
        assert (prop(c, "verdict"), prop(c, "status"), prop(c, "status_reason")) == ("not_audited", status, reason)
        assert prop(c, "flagged") is None and prop(c, "score") is None and vulns_of(doc, c) == {}
    assert prop(comps["bad/malformed"], "error") == "header length 9e9 > file size"
    assert prop(comps["odd/rank64"], "verdict") == "not_judged"  # scored, stratum not calibrated
    assert prop(comps["mixed/provenance"], "provenance_mismatch") == "true"
    assert prop(comps["mixed/provenance"], "declared_base") == "meta-llama/Llama-3.2-1B"
    assert prop(comps["org1/adapter-4"], "hub_security") == "issues"


def test_local_adapter_has_no_purl_and_no_url_and_files_carry_their_sha256():
    doc = render(sample_report())
    comps = by_repo(doc)
    local = comps[LOCAL]
    assert "purl" not in local and "externalReferences" not in local and "group" not in local
    assert re.fullmatch(r"hubaudit:adapter:[0-9a-f]{16}", local["bom-ref"]) and local["name"] == LOCAL
    assert local["version"] == hashlib.sha256(b"local weights").hexdigest()
    for c in (local, comps["evil/sentiment-lora"]):
        files = {f["name"]: f for f in c["components"]}
        assert files["adapter_model.safetensors"] == {
            "type": "file", "name": "adapter_model.safetensors", "hashes": [{"alg": "SHA-256", "content": SHA256_A}],
            "properties": [{"name": "hubaudit:size_bytes", "value": "1234"}]}  # fmt: skip
        assert files["adapter_config.json"]["hashes"] == [{"alg": "SHA-256", "content": SHA256_B.lower()}]
        assert "hashes" not in files["README.md"]  # not a SHA-256 digest: no hash claimed
    assert "components" not in comps["org1/adapter-1"]  # no stored files, no file components


def test_ids_are_stable_and_the_serial_is_a_uuid_of_the_content():
    a = get_format("cyclonedx").render(sample_report())
    assert a == get_format("cyclonedx").render(sample_report())  # diffable: same report, same bytes
    later = render(sample_report(generated_at=S.NOW + timedelta(days=1)))
    doc = json.loads(a)
    serial = uuid.UUID(doc["serialNumber"].removeprefix("urn:uuid:"))
    assert doc["serialNumber"].startswith("urn:uuid:") and serial.version == 5
    assert later["serialNumber"] != doc["serialNumber"]  # another run is another BOM
    assert [v["id"] for v in later["vulnerabilities"]] == [v["id"] for v in doc["vulnerabilities"]]
    assert [c["bom-ref"] for c in later["components"]] == [c["bom-ref"] for c in doc["components"]]


def test_the_same_revision_twice_still_gets_unique_refs():
    report = sample_report()
    twice = replace(report, adapters=report.adapters + report.adapters[:3])
    doc = render(twice)
    validate(doc)  # unique bom-refs, every affects/dependency ref resolves
    assert len(doc["components"]) == len(report.adapters) + 3


def test_purl_follows_the_huggingface_type():
    sha = _HEX40
    assert purl("microsoft/deberta-v3-base", sha) == f"pkg:huggingface/microsoft/deberta-v3-base@{sha}"
    assert purl("distilbert-base-uncased", sha) == f"pkg:huggingface/distilbert-base-uncased@{sha}"
    assert purl("Org/Name", None) == "pkg:huggingface/Org/Name"  # case kept: namespace and name are case-sensitive
    for repo, s in (("org/name", sha.upper()), ("org/name", sha[:12]), ("org/name", "main"), ("local:/x/y", sha),
                    ("org/na me", sha), ("org/../x", sha), ("a/b/c", sha), ("org/name?x=1", sha), ("", sha)):  # fmt: skip
        assert purl(repo, s) is None, (repo, s)


# ---------------------------------------------------------------- hostile data


def _hostile_report(repos: list[str], shas: list[str], texts: list[str]):
    rows = []
    for i, (repo, sha) in enumerate(zip(repos, shas, strict=True)):
        kind = i % 4
        if kind == 0:
            r = S.row(100 + i, score=0.05, flagged=True, margin=0.1, reasons=(texts[i % len(texts)],), repo=repo,
                      probe={"flagged": True, "battery": texts[0], "search": {"status": "ok", "trigger": texts[-1],
                                                                             "label": texts[0], "attack_rate": 1.0}})  # fmt: skip
        elif kind == 1:
            r = S.row(100 + i, status="error", reason=texts[i % len(texts)], error=texts[0], repo=repo)
        else:
            r = S.row(100 + i, score=0.01, flagged=False, margin=-0.1, repo=repo, declared_base=texts[-1])
        r["sha"] = sha
        r["files"] = [{"name": texts[0], "size": 5, "sha256": SHA256_A}, {"name": texts[-1], "sha256": texts[0]}]
        rows.append(r)
    sups = [Suppression(repo=repos[0], reason=texts[-1], expires=date(2999, 1, 1))]
    report = S.sample_report(rows=rows, suppressions=sups)
    derived = DerivedFrom(texts[0], texts[-1], 0.99, "copy", "blocklist", 0.95)
    return replace(report, adapters=tuple(replace(e, derived_from=derived, downstream=(DownstreamRepo(texts[0], texts[-1]),))
                                          if i % 4 == 2 else e for i, e in enumerate(report.adapters)))  # fmt: skip


_repo = st.one_of(hostile_text, hostile_text.map(lambda s: "local:" + s), st.sampled_from(["org/name", "x", "local:/a b"]))
_sha = st.one_of(hostile_text, st.sampled_from([_HEX40, _HEX40.upper(), _HEX40[:9], "0" * 64, _HEX40 + "\n"]))


@given(st.lists(st.tuples(_repo, _sha), min_size=1, max_size=6, unique_by=lambda t: t[0]),
       st.lists(hostile_text_surrogates, min_size=1, max_size=3))  # fmt: skip
@HOSTILE_SETTINGS
def test_hostile_ids_and_reasons_give_valid_json_and_no_purl_or_url_off_grammar(pairs, texts):
    repos, shas = [p[0] for p in pairs], [p[1] for p in pairs]
    report = _hostile_report(repos, shas, texts)
    doc = render(report)  # parses; no raw control, bidi or surrogate character in the text
    validate(doc)
    comps = doc["components"]
    assert [prop(c, "repo_id") for c in comps] == [e.repo_id for e in report.adapters]  # carried unchanged
    for e, c in zip(report.adapters, comps, strict=True):
        on_grammar = not e.repo_id.startswith("local:") and is_hub_repo_id(e.repo_id)
        assert ("purl" in c) == (on_grammar and e.sha == _HEX40)
        if "purl" in c:
            assert on_grammar and re.fullmatch(r"[0-9a-f]{40}", e.sha) and c["purl"] == f"pkg:huggingface/{e.repo_id}@{e.sha}"
            assert c["bom-ref"] == c["purl"]
        else:
            assert c["bom-ref"].startswith("hubaudit:adapter:")
        for ref in c.get("externalReferences", ()):
            assert on_grammar and ref["url"] == hub_url(e.repo_id, e.sha) and ref["url"].startswith("https://huggingface.co/")
    for v in doc["vulnerabilities"]:
        for field in ("description", "detail"):
            assert not controls(v[field], allowed="\n")


# ---------------------------------------------------------------- export and the CLI


def test_export_format_choices_match_the_export_formats():
    assert [f.value for f in ExportFormat] == list(EXPORT_FORMATS)


def test_export_selects_like_the_other_export_formats():
    report = sample_report()
    blocklist = json.loads(render_export(report, "cyclonedx"))  # default: unsuppressed findings only
    validate(blocklist)
    repos = set(by_repo(blocklist))
    assert repos == {e.repo_id for e in report.adapters if e.is_active_finding}
    assert "reviewed/false-positive" not in repos and prop(blocklist["metadata"], "flagged_only") == "true"
    everything = json.loads(render_export(report, "cyclonedx", flagged=False, include_suppressed=True))
    assert len(everything["components"]) == len(report.adapters)
    assert prop(everything["metadata"], "flagged_only") == "false"


def test_export_cyclonedx_end_to_end(store_url, suppress_file, tmp_path):
    """A copy of the test store plus one ingested local adapter, exported through the CLI to a file."""
    from hubaudit.pipeline.ingest import ingest
    from hubaudit.store import Store
    from tests.report.test_cli import run

    db = tmp_path / "copy.db"
    shutil.copyfile(store_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    adapter = write_lora(tmp_path / "mine", seed=7, base=STORE_BASE)
    with Store.open(url) as store:
        ingest(store, [adapter], STORE_BASE)
    out = tmp_path / "sbom.cdx.json"
    p = run("export", "--base", STORE_BASE, "--all", "--include-suppressed", "--format", "cyclonedx",
            "--suppress", str(suppress_file), "--db", url, "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and "exported 44 revision(s)" in p.stderr
    doc = json.loads(out.read_text())
    validate(doc)
    comps = by_repo(doc)
    assert len(comps) == 44 and doc["metadata"]["component"]["purl"] == f"pkg:huggingface/{STORE_BASE}"
    assert set(vulns_of(doc, comps[OUTLIERS[0]])) == {"WEIGHTS", "PROBE"}
    assert vulns_of(doc, comps[OUTLIERS[0]])["PROBE"]["analysis"] == {"state": "exploitable"}
    assert vulns_of(doc, comps[OUTLIERS[1]])["WEIGHTS"]["analysis"]["response"] == ["will_not_fix"]
    assert prop(comps["old/pickle-adapter"], "verdict") == "not_audited"
    assert prop(comps["corp/gated-a"], "status_reason") == "gated"
    local = comps[f"local:{adapter.absolute()}"]
    assert "purl" not in local and "externalReferences" not in local
    digests = {f["name"]: f["hashes"][0]["content"] for f in local["components"]}
    assert digests == {n: hashlib.sha256((adapter / n).read_bytes()).hexdigest()
                       for n in ("adapter_config.json", "adapter_model.safetensors")}  # fmt: skip

    p = run("export", "--base", STORE_BASE, "--format", "cyclonedx", "--suppress", str(suppress_file), "--db", url)
    assert p.returncode == 0, p.stderr
    blocklist = json.loads(p.stdout)  # stdout carries only the document
    validate(blocklist)
    assert set(by_repo(blocklist)) == {OUTLIERS[0]}  # the other outlier is suppressed

    p = run("report", "--base", STORE_BASE, "--format", "cyclonedx", "--db", url)
    assert p.returncode == 0, p.stderr
    validate(json.loads(p.stdout))


def test_an_adapter_crawled_from_a_mirror_gets_no_huggingface_purl_or_url():
    # Its name fits the Hub's grammar, but only a mirror/loopback endpoint listed it: huggingface.co
    # may hold nothing (or something else) under that purl.
    report = sample_report()
    mirrored = replace(report, adapters=tuple(replace(e, source="mirror") if e.repo_id == "org1/adapter-4" else e
                                              for e in report.adapters))  # fmt: skip
    doc = render(mirrored)
    validate(doc)
    comp = by_repo(doc)["org1/adapter-4"]
    assert "purl" not in comp and comp["bom-ref"].startswith("hubaudit:adapter:")
    assert not any("huggingface.co" in r.get("url", "") for r in comp.get("externalReferences", []))
    assert "purl" in by_repo(render(report))["org1/adapter-4"]  # the same entry listed by huggingface.co has one
