"""A tiny local model whose greedy reply to every chat prompt is one fixed string.

A randomly initialised tiny model answers blank lines or byte noise, which a real server passes on
and stage 1 rightly treats as no answer. Tests that drive a real model server (``transformers
serve``) need replies that carry a final answer, so this builds a 2-layer model by hand: its
layers add nothing to the residual stream (their output projections are zero), so the next token
depends on the current token alone, and the output head maps each token of ``"\\n" + reply`` to
the one after it, and the last one to EOS. Chat templates end the prompt with a newline, so the
greedy continuation is exactly ``reply``.
"""

from __future__ import annotations

from pathlib import Path

from exgrpo_verl.testing.tiny import CHAT_STYLES, build_tiny_model, build_tokenizer

LOGIT_SCALE = 10.0
"""How much the intended next token outscores the rest (the embeddings are only nearly orthogonal)."""


def reply_chain(tokenizer, reply: str) -> list[int]:
    """Token ids of the prompt's last token (a newline), the reply, then EOS; each one once."""
    ids = tokenizer.encode("\n" + reply, add_special_tokens=False) + [tokenizer.eos_token_id]
    if len(set(ids[:-1])) != len(ids) - 1:
        raise ValueError(f"every token of the reply must be distinct and not a newline: {reply!r}")
    return ids


def save_fixed_reply_model(directory: str | Path, reply: str, style: str = "qwen2", seed: int = 0) -> Path:
    """Write a tiny model (and tokenizer) that answers every ``style`` chat prompt with ``reply``.

    ``reply`` must not repeat a token (the byte-level tokenizer: a character): ``"\\boxed{7}"`` works,
    ``"\\boxed{11}"`` does not. The chat template must end the prompt with a newline (qwen2 and
    gemma do; llama3 ends with two)."""
    import torch

    directory = Path(directory)
    tokenizer = build_tokenizer(style)
    chain = reply_chain(tokenizer, reply)
    model = build_tiny_model(tokenizer, style, seed)
    model.config.tie_word_embeddings = False
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        torch.manual_seed(seed)
        directions = torch.nn.functional.normalize(torch.randn_like(embeddings), dim=-1)
        embeddings.copy_(directions)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        head = torch.zeros_like(embeddings)
        for current, following in zip(chain, chain[1:], strict=False):
            head[following] = LOGIT_SCALE * directions[current]
        model.lm_head = torch.nn.Linear(embeddings.shape[1], embeddings.shape[0], bias=False)
        model.lm_head.weight.copy_(head)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(CHAT_STYLES[style]["eos"])
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
