"""ScanResult builders for store tests (what the weight scanner hands the store)."""

from __future__ import annotations

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.models import ModuleStat, ScanResult


def scan(score: float = 0.01, *, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"),
         features: dict[str, float] | None = None, sha: str = "0" * 64) -> ScanResult:  # fmt: skip
    mods = [ModuleStat(f"model.layers.{i}.self_attn.{t}", i, t, "linear", 64, 64, rank, 2.0, score * (1 + i), (0.3, 0.1))
            for i in range(2) for t in targets]  # fmt: skip
    return ScanResult(
        source="test", status="ok", score=score, peft_type="LORA", variant="lora", rank=rank, alpha=2.0 * rank,
        target_modules=tuple(sorted(targets)), n_modules=len(mods),
        features=features if features is not None else {"global_frobN_std": score, "global_frobN_mean": 2 * score},
        modules=mods, content_sha256=sha, featureset_version=FEATURESET_VERSION,
    )  # fmt: skip
