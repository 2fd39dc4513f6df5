import pytest


def import_training_libraries() -> None:
    """Import what training uses before a test records the environment: torch's own import-time side
    effects (importing torch._dynamo sets TORCHINDUCTOR_CACHE_DIR) are not the demo kit's."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from peft import PeftModel, get_peft_model  # noqa: F401
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401
