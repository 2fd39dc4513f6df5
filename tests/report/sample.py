"""Hand-built audit rows (the store's AuditRow field names) for the pure report tests."""

from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace

from hubaudit.report import build_report, norm_map
from hubaudit.report.model import Suppression

BASE = "Qwen/Qwen2.5-1.5B"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 25)
STRATUM = "lora|r16|k_proj,q_proj,v_proj"
STRATUM8 = "lora|r8|q_proj,v_proj"


def sha(i: int) -> str:
    return f"{i:040x}"


def threshold_set(ts_id: int = 7, version: int = 3) -> SimpleNamespace:
    return SimpleNamespace(
        id=ts_id, base=BASE, version=version, method="robust-mad", featureset_version="fs-1", n=40,
        strata={STRATUM: {"n": 30, "score_threshold": 0.02}, STRATUM8: {"n": 10, "score_threshold": 0.05}},
        params={}, created_at=datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc),
    )


def row(i: int, *, score=None, flagged=None, status="scored", reason=None, stratum=STRATUM, ts_id=7,
        margin=None, reasons=(), probe=None, declared_base=BASE, downloads=100, repo=None, error=None):
    return {
        "revision_id": i, "repo_id": repo or f"org{i % 3}/adapter-{i}", "sha": sha(i), "status": status,
        "reason": reason, "error": error, "score": score, "features": {"global_frobN_std": score} if score else {},
        "stratum": stratum if status == "scored" else None, "flagged": flagged,
        # judge.py's structured records of the features that fired (here: one per reason, values not modelled)
        "breakdown": ({"reasons": list(reasons), "margin": margin} | ({"fired": [
            {"feature": r, "direction": "above", "value": None, "threshold": None, "margin": None} for r in reasons]}
            if flagged else {})) if flagged is not None else {},
        "threshold_set_id": ts_id if flagged is not None else None,
        "first_seen": datetime(2026, 11, 1 + i % 20, tzinfo=timezone.utc),
        "last_seen": NOW, "downloads": downloads, "likes": 1, "removed": False,
        "declared_base": declared_base, "provenance": None, "probe": probe,
    }


def population_rows() -> list[dict]:
    rows = [row(i, score=0.010 + 0.0002 * i, flagged=False, margin=-0.005) for i in range(1, 25)]
    rows.append(row(30, score=0.031, flagged=True, margin=0.011, reasons=("global_frobN_std", "layer_concentration"),
                    repo="evil/sentiment-lora", downloads=12345))
    rows.append(row(31, score=0.027, flagged=True, margin=0.007, reasons=("global_frobN_std",),
                    probe={"flagged": True, "mean_attack_rate": 0.61, "outlier_gap": 0.34, "battery": "v1"},
                    repo="evil/probe-confirmed"))
    rows.append(row(32, score=0.024, flagged=True, margin=0.004, reasons=("spectral_concentration",),
                    repo="reviewed/false-positive"))
    rows.append(row(33, score=0.03, flagged=None, stratum="lora|r64|q_proj", repo="odd/rank64"))
    rows.append(row(40, status="unsupported", reason="pickle_format", repo="old/pickle-adapter"))
    rows.append(row(41, status="skipped", reason="gated", repo="corp/gated-adapter"))
    rows.append(row(42, status="skipped", reason="gated", repo="corp/gated-adapter2"))
    rows.append(row(43, status="error", reason="malformed", error="header length 9e9 > file size",
                    repo="bad/malformed"))
    rows.append(row(44, score=0.011, flagged=False, margin=-0.009, declared_base="meta-llama/Llama-3.2-1B",
                    repo="mixed/provenance"))
    return rows


def modules(scale: float = 1.0, hot_layer: int | None = None) -> list[dict]:
    out = []
    for layer in range(4):
        for proj in ("k_proj", "q_proj", "v_proj"):
            v = 0.01 * (1 + 0.1 * layer) * scale * (6.0 if layer == hot_layer and proj == "v_proj" else 1.0)
            out.append({"name": f"model.layers.{layer}.self_attn.{proj}", "layer": layer, "projection": proj,
                        "frob_norm": v})
    return out


SUPPRESSIONS = [
    Suppression(repo="reviewed/false-positive", reason="reviewed: lr=1e-3 run, probes clean", expires=date(2027, 1, 31)),
    Suppression(repo="evil/sentiment-lora", sha=sha(30)[:10], reason="old ticket", expires=date(2026, 10, 1)),
]


def sample_report(**kw):
    rows = kw.pop("rows", None) or population_rows()
    ts = kw.pop("threshold_set", threshold_set())
    maps = [norm_map("evil/sentiment-lora", sha(30), modules(hot_layer=2), [modules(s) for s in (0.9, 1.0, 1.1)])]
    args = dict(generated_at=NOW, tool_version="0.1.0", today=TODAY, suppressions=SUPPRESSIONS, norm_maps=maps)
    args.update(kw)
    return build_report(BASE, rows, ts, **args)
