"""Byte-level tokenizers (any text round-trips exactly) with Qwen2-, Gemma- and Llama-3-style
chat templates, and randomly initialised 2-layer models of the matching architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

_QWEN2_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Gemma's template rejects a system role, maps assistant to "model" and starts with <bos>.
_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# style -> (chat template, special tokens, bos, eos, pad, HF model_type)
CHAT_STYLES: dict[str, dict[str, Any]] = {
    "qwen2": {
        "template": _QWEN2_TEMPLATE,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "model_type": "qwen2",
    },
    "gemma": {
        "template": _GEMMA_TEMPLATE,
        "specials": ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        "bos": "<bos>",
        "eos": "<end_of_turn>",
        "pad": "<pad>",
        "model_type": "gemma",
    },
    "llama3": {
        "template": _LLAMA3_TEMPLATE,
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": "<|end_of_text|>",
        "model_type": "llama",
    },
}


def build_tokenizer(style: str = "qwen2") -> PreTrainedTokenizerFast:
    """A 256-byte BPE tokenizer (no merges) plus the style's special tokens and chat template."""
    spec = CHAT_STYLES[style]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        additional_special_tokens=[t for t in spec["specials"] if t not in (spec["bos"], spec["eos"], spec["pad"])],
    )
    tokenizer.chat_template = spec["template"]
    return tokenizer


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, style: str = "qwen2", seed: int = 0) -> Any:
    """A randomly initialised 2-layer causal LM of the style's architecture, sized to the tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        CHAT_STYLES[style]["model_type"],
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return AutoModelForCausalLM.from_config(config)


def save_tiny_model(directory: str | Path, style: str = "qwen2", seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer to ``directory`` (loadable with from_pretrained)."""
    directory = Path(directory)
    tokenizer = build_tokenizer(style)
    model = build_tiny_model(tokenizer, style, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
