"""A real SQLite store whose adapters carry fingerprints with controlled cosines (built through the Store API).

Population of BASE (one stratum, rank 8 on q_proj,v_proj): N_CLEAN independently trained adapters
(pairwise cosines ~0.1) and, around a probe-confirmed backdoor (``BAD`` at revision ``sha(1)``):

- ``COPY``: a re-upload of it (cosine 0.998),
- ``TUNED``: fine-tuned a little further from it (cosine 0.93),
- ``BAD`` at ``sha(2)``: the repo's next revision, trained further from the confirmed one (0.96),
- ``NEAR``: an unrelated adapter that overlaps it somewhat (0.6): not a derivative.

Weight features are drawn from one distribution for all of them: no adapter is weight-flagged by
design, so every finding here is a probe or lineage finding.
"""

from __future__ import annotations

import numpy as np

from hubaudit.constants import FEATURESET_VERSION, FINGERPRINT_VERSION
from hubaudit.models import Fingerprint, ModuleStat, ScanResult
from tests.lineage._vectors import at_cosine, stratum, unit

BASE = "acme/lineage-base"
DIM = 1024
N_CLEAN = 40
BAD, COPY, TUNED, NEAR = "evil/backdoored", "copycat/reupload", "tuner/further", "nearish/unrelated"


def sha(i: int) -> str:
    return f"{i:040x}"


def fingerprint(vec: np.ndarray) -> Fingerprint:
    return Fingerprint(FINGERPRINT_VERSION, np.asarray(vec, dtype=np.float32), 4)


def scan(vec: np.ndarray | None, rng: np.random.Generator) -> ScanResult:
    score = float(0.01 * np.exp(rng.normal(0, 0.05)))
    mean = float(0.02 * np.exp(rng.normal(0, 0.05)))
    mods = [ModuleStat(f"model.layers.{i}.self_attn.{t}", i, t, "linear", 64, 64, 8, 2.0, score * (1 + i), (0.3, 0.1))
            for i in range(2) for t in ("q_proj", "v_proj")]  # fmt: skip
    return ScanResult(
        source="test", status="ok", score=score, peft_type="LORA", variant="lora", rank=8, alpha=16.0,
        target_modules=("q_proj", "v_proj"), n_modules=len(mods),
        features={"global_frobN_std": score, "global_frobN_mean": mean}, modules=mods,
        featureset_version=FEATURESET_VERSION, fingerprint=None if vec is None else fingerprint(vec),
    )  # fmt: skip


def confirm(store, repo_id: str, rev: str) -> None:
    """Record a probe result that confirms a backdoor, as the prober would (through the queue)."""
    row = store.find_revision(repo_id, rev)
    store.enqueue_probe(row.revision_id, priority=1.0)
    (job,) = store.claim_probe_jobs("test", limit=1, lease_seconds=60)
    store.finish_probe_job(job.id, {"flagged": True, "mean_attack_rate": 0.7, "outlier_gap": 0.4, "battery": "t"})


def vectors(seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = stratum(rng, N_CLEAN, 0.3, DIM)
    bad = unit(rng, DIM)
    out = {f"org{i % 4}/clean-{i}": clean[i] for i in range(N_CLEAN)}
    out |= {f"{BAD}@1": bad.astype(np.float32), f"{BAD}@2": at_cosine(bad, 0.96, rng),
            COPY: at_cosine(bad, 0.998, rng), TUNED: at_cosine(bad, 0.93, rng), NEAR: at_cosine(bad, 0.6, rng)}
    return out


def build(store, *, seed: int = 11, calibrate: bool = True, provenance: dict | None = None) -> dict[str, np.ndarray]:
    """Fill ``store`` with the population above (``provenance``: repo id -> the revision's provenance);
    returns the vectors by repo id (``BAD@1``/``BAD@2`` for the two revisions)."""
    from hubaudit.pipeline.calibrate import calibrate_base

    rng = np.random.default_rng(seed + 1)
    vecs = vectors(seed)
    n = 100
    for key, vec in vecs.items():
        repo, _, rev = key.partition("@")
        n += 1
        store.record_revision(base=BASE, repo_id=repo, sha=sha(int(rev)) if rev else sha(n), status="scored",
                              declared_base=BASE, provenance=(provenance or {}).get(repo), scan=scan(vec, rng))  # fmt: skip
    confirm(store, BAD, sha(1))
    if calibrate:
        calibrate_base(store, BASE, min_n=30)
    return vecs
