"""Offline stand-ins for hub artefacts: tiny tokenizers with real chat templates and tiny models.

Tests, benchmarks and the install smoke check use these so that nothing needs the Hugging Face hub.
"""

from exgrpo_verl.testing.tiny import CHAT_STYLES, build_tiny_model, build_tokenizer, save_tiny_model

__all__ = ["CHAT_STYLES", "build_tiny_model", "build_tokenizer", "save_tiny_model"]
