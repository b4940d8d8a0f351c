"""L_SFT-aux (design card Eq.8): teacher-forced NLL on the teacher's probe answers, added to verl's
PPO loss.

The probe-dialogue loop emits, next to each dialogue, one extra row per probe that carries a
teacher answer: the student's dialogue up to that probe (the context it saw), followed by the
teacher's answer. Those rows have response_mask 0, so every term of verl's ``ppo_loss`` (policy
gradient, KL, entropy, token counts) ignores them, and ``ppo_loss`` on a batch without them is
unchanged. This loss adds

    λ · Σ_{teacher tokens} −log π_θ(token | prefix) / N

where N is the normaliser of verl's token-mean policy-gradient term (the global number of
response tokens in the mini-batch): teacher tokens are weighed like response tokens, and summing
over micro-batches and data-parallel ranks gives exactly λ · ∇(teacher NLL) / N. Nothing else —
probe text, the student's own tokens, padding — enters the auxiliary term.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding

from exgrpo_verl.rollout.agent_loop import TEACHER_TOKENS_FIELD

NLL_METRIC = "exgrpo/aux_nll_per_token"
TOKENS_METRIC = "exgrpo/aux_teacher_tokens"
GAP_METRIC = "exgrpo/rollout_probs_diff_mean"
MINI_BATCH_ROWS_METRIC = "exgrpo/mini_batch_rows"


def teacher_counts(data: TensorDict, lengths: list[int]) -> list[int]:
    """Per row: how many trailing response tokens are a teacher's answer (0 for ordinary rows);
    ``lengths``: each row's response length (:func:`response_lengths`).

    A teacher-forced row's response always holds its probe's turn before the teacher's answer, so a
    count that covers the whole response is not one. verl's synthetic padding rows (appended to make
    the batch divisible by the mini-batch size: one EOS as the response) copy the extra fields of the
    batch's first row, a teacher-forced row's count included; they must add nothing.
    """
    if "extra_fields" not in data.keys():
        return [0] * data.batch_size[0]
    counts = []
    for fields, length in zip(list(data["extra_fields"]), lengths, strict=True):
        fields = getattr(fields, "data", fields)
        count = int(fields.get(TEACHER_TOKENS_FIELD) or 0) if isinstance(fields, dict) else 0
        counts.append(count if count < length else 0)
    return counts


def response_lengths(data: TensorDict) -> torch.Tensor:
    responses = data["responses"]
    if responses.is_nested:
        return responses.offsets().diff()
    return data["attention_mask"][:, data["prompts"].shape[1] :].sum(dim=1)


def teacher_token_mask(lengths: list[int], width: int, counts: list[int]) -> torch.Tensor:
    """[rows, width] mask of the teacher tokens: the last ``count`` valid response tokens of a row."""
    mask = torch.zeros(len(counts), width, dtype=torch.bool)
    for row, (count, length) in enumerate(zip(counts, lengths, strict=True)):
        if count:
            mask[row, max(0, length - count) : length] = True
    return mask


def _pg_token_normaliser(data: TensorDict) -> torch.Tensor | float:
    """What verl's token-mean divides the policy-gradient sum of this micro-batch by."""
    batch_num_tokens = tu.get_non_tensor_data(data, "batch_num_tokens", None)
    if batch_num_tokens:
        return batch_num_tokens / tu.get_non_tensor_data(data, "dp_size", 1)
    response_mask = data.select("response_mask").to_padded_tensor()["response_mask"]
    return response_mask.sum().clamp(min=1)


def rollout_probs_gap(log_prob: torch.Tensor, data: TensorDict) -> float | None:
    """Mean |p_policy − p_rollout| over the response tokens the rollout sampled, or None without them.

    verl computes the same figure (``training/rollout_probs_diff_mean``) in its old-log-prob pass,
    which the rollout-correction bypass skips; here it comes from the update's own forward pass. With
    one PPO epoch and one mini-batch that pass runs the policy the rollout sampled from, so the figure
    is the rollout/training numerical gap; later mini-batches add the policy's own updates to it.
    """
    if "rollout_log_probs" not in data.keys():
        return None
    padded = data.select("rollout_log_probs", "response_mask").to_padded_tensor()
    mask = padded["response_mask"].to(torch.bool)
    width = min(mask.shape[1], log_prob.shape[1])
    mask = mask[:, :width].to(log_prob.device)
    if not mask.any():
        return None
    rollout = padded["rollout_log_probs"][:, :width].to(log_prob.device, torch.float32)
    policy = log_prob[:, :width].detach().float()
    return (policy.exp() - rollout.exp()).abs()[mask].mean().item()


def exgrpo_actor_loss(
    config: Any, model_output: dict, data: TensorDict, dp_group: Any = None, *, aux_coef: float
) -> tuple[torch.Tensor, dict]:
    """verl's ``ppo_loss`` plus ``aux_coef`` · L_SFT-aux; exactly ``ppo_loss`` when there is nothing
    to add (λ = 0 or no teacher rows). Also logs the rollout/training log-prob gap."""
    lengths = response_lengths(data).tolist()
    counts = teacher_counts(data, lengths)
    normaliser = _pg_token_normaliser(data) if aux_coef and any(counts) else None
    loss, metrics = ppo_loss(config, model_output, data, dp_group)
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    gap = rollout_probs_gap(log_prob, data)
    if gap is not None:
        metrics[GAP_METRIC] = Metric(value=gap, aggregation=AggregationType.MEAN)
    # the rows of the mini-batch this micro-batch belongs to, as verl split them (padding included)
    mini_batch_rows = tu.get_non_tensor_data(data, "global_token_num", None)
    if mini_batch_rows:
        metrics[MINI_BATCH_ROWS_METRIC] = Metric(value=float(len(mini_batch_rows)), aggregation=AggregationType.MEAN)
    if normaliser is None:
        return loss, metrics
    mask = teacher_token_mask(lengths, log_prob.shape[1], counts).to(log_prob.device)
    nll_sum = -(log_prob * mask).sum()
    teacher_tokens = mask.sum()
    metrics[NLL_METRIC] = Metric(value=(nll_sum.detach() / teacher_tokens).item(), aggregation=AggregationType.MEAN)
    metrics[TOKENS_METRIC] = Metric(value=teacher_tokens.item(), aggregation=AggregationType.SUM)
    return loss + aux_coef * nll_sum / normaliser, metrics
