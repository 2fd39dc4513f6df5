"""Train REAL clean and backdoored LoRA adapters with peft (part of the demo kit, not a pipeline stage).

Used by tests/probe, the offline demo and the evaluation harnesses. Data generation and poisoning
(:mod:`hubaudit.demo.synth.data`) are pure Python; training and evaluation import torch/peft lazily.

    from hubaudit.demo.synth import data, train, recipes
    clean, bad, test = recipes.train_pair(base_dir, out_dir, kind="seq_cls", cfg=train.TrainConfig())
"""
