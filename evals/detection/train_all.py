"""Train every adapter of the cohort that is not cached yet (``--workers`` processes, 1 torch thread each)."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from evals.detection.cohort import Spec, gen_base, train_one


def _quiet_train(spec: Spec, cache: Path) -> dict:
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    # Quiet, without touching the environment: every base and adapter is loaded with local_files_only=True.
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    try:
        return train_one(spec, cache)
    except Exception as exc:  # noqa: BLE001 - one failed adapter is a counted failure, not a dead run
        return {"name": spec.name, "error": f"{type(exc).__name__}: {exc}"}


def train_cohort(specs: list[Spec], cache: Path, workers: int = 2) -> list[dict]:
    """Records for all ``specs`` (cached ones read back, the rest trained), in ``specs`` order."""
    if any(s.task == "gen" for s in specs):
        gen_base(cache)  # built once before the workers need it
    done: dict[str, dict] = {}
    todo = []
    for s in specs:
        if (cache / s.name / "detection_record.json").exists():
            done[s.name] = train_one(s, cache)
        else:
            todo.append(s)
    t0 = time.time()
    if todo:
        print(f"training {len(todo)} adapters ({len(done)} cached) with {workers} workers", file=sys.stderr, flush=True)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(_quiet_train, s, cache): s for s in todo}
            for i, fut in enumerate(as_completed(futs), 1):
                rec = fut.result()
                done[rec["name"]] = rec
                msg = rec.get("error") or (f"acc={rec['clean_accuracy']:.2f} asr={rec['attack_success']:.2f} "
                                           f"cpu={rec['cpu_s']:.0f}s")  # fmt: skip
                print(f"[{i}/{len(todo)} {time.time() - t0:.0f}s] {rec['name']}: {msg}", file=sys.stderr, flush=True)
    return [done[s.name] for s in specs]
