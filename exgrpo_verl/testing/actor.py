"""Drive verl's actor loss on the CPU: model log-probs in verl's no-padding layout and the batch
fields ``verl.workers.utils.losses.ppo_loss`` reads."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu


def pad_rollouts(
    prompts: list[list[int]], responses: list[list[int]], masks: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """verl's padded layout: left-padded prompts, right-padded responses, attention and response masks."""
    prompt_width = max(len(p) for p in prompts)
    response_width = max(max(len(r) for r in responses), 1)
    rows: dict[str, list[list[int]]] = {"prompts": [], "responses": [], "attention_mask": [], "response_mask": []}
    for prompt, response, mask in zip(prompts, responses, masks, strict=True):
        left, right = prompt_width - len(prompt), response_width - len(response)
        rows["prompts"].append([pad_id] * left + list(prompt))
        rows["responses"].append(list(response) + [pad_id] * right)
        rows["attention_mask"].append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
        rows["response_mask"].append(list(mask) + [0] * right)
    return {key: torch.tensor(value, dtype=torch.long) for key, value in rows.items()}


def sequence_log_probs(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token log-probs of every unpadded prompt+response sequence, concatenated: position k
    holds log p(token k+1 | tokens ≤ k), as verl's engines return ``log_probs`` (no padding)."""
    device = next(model.parameters()).device
    input_ids = torch.cat([batch["prompts"], batch["responses"]], dim=1).to(device)
    attention = batch["attention_mask"].to(device)
    pieces = []
    for ids, mask in zip(input_ids, attention, strict=True):
        sequence = ids[mask.bool()].unsqueeze(0)
        logits = model(input_ids=sequence).logits[0].float()
        next_ids = torch.roll(sequence[0], shifts=-1)
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)
        pieces.append(torch.cat([log_probs[:-1], log_probs.new_zeros(1)]))
    return torch.cat(pieces)


def response_log_probs(flat: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The response part of :func:`sequence_log_probs`, padded to [batch, response_width]."""
    from verl.workers.utils.padding import no_padding_2_padding

    on_device = {key: value.to(flat.device) for key, value in batch.items()}
    return no_padding_2_padding(flat, TensorDict(on_device, batch_size=batch["prompts"].size(0)))


def loss_batch(batch: dict[str, torch.Tensor], **fields: Any) -> TensorDict:
    """A TensorDict with the rollout tensors, extra per-row ``fields`` and the global-batch scalars
    ``ppo_loss`` expects (one data-parallel rank, no token/batch normalisers)."""
    data = TensorDict({**batch, **fields}, batch_size=batch["prompts"].size(0))
    for key, value in {"dp_size": 1, "batch_num_tokens": None, "global_batch_size": None}.items():
        tu.assign_non_tensor_data(data, key, value)
    return data
