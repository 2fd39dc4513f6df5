"""Train REAL clean and backdoored LoRA adapters with peft (a shared utility, not a pipeline stage).

Used by tests/probe, the offline demo and the evaluation harnesses. Data generation and poisoning
(:mod:`hubaudit.synth.data`) are pure Python; training and evaluation import torch/peft lazily.

    from hubaudit.synth import data, train, recipes
    clean, bad, test = recipes.train_pair(base_dir, out_dir, kind="seq_cls", cfg=train.TrainConfig())
"""
