"""hubaudit: audit the LoRA adapters of a base model on the Hugging Face Hub for backdoors."""

__version__ = "0.1.0"
