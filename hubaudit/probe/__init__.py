"""Behavioral probing of LoRA adapters (batteries of arXiv 2605.30189).

Torch-free modules: :mod:`batteries` (versioned probe batteries), :mod:`prompting` (evaluation
prompts, label-classifier prompt format), :mod:`stats` (a_p, mean_attack_rate, outlier_gap, the
decision rule, calibration). :mod:`prober` (torch/peft/transformers, imported lazily by callers)
loads each base once and hot-swaps adapters; :mod:`task` is the executor-side entry point.
"""
