"""L_SFT-aux overhead on a CPU micro-batch: extra tokens, loss-function time, forward+backward time.

A group of 4 probe dialogues (k=3 probes, Scenario A/B halves, every probe with a teacher answer)
from the real agent loop and a scripted student; the anchor is the same micro-batch without the
teacher rows under verl's ``ppo_loss``.

    python benchmarks/bench_aux_loss.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import torch
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exgrpo_verl.testing import build_tiny_model, build_tokenizer  # noqa: E402
from exgrpo_verl.testing.actor import pad_rollouts, response_log_probs, sequence_log_probs  # noqa: E402
from exgrpo_verl.testing.servers import ScriptedServer  # noqa: E402
from exgrpo_verl.training.aux_loss import exgrpo_actor_loss  # noqa: E402
from tests.rollout_helpers import QUESTION, make_loop, make_row, run_kwargs, trainer_config  # noqa: E402

OVERRIDES = ("++exgrpo.aux_sft_coef=0.1", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8")


def rollouts(tokenizer) -> list:
    reply = "Let us reason it through carefully, step by step, with the numbers given. " * 2

    def student(prompt: str) -> str:
        return reply + ("\\boxed{5}" if QUESTION in prompt else "")

    async def main():
        loop = make_loop(tokenizer, ScriptedServer(tokenizer, student), overrides=OVERRIDES)
        outputs = []
        for session in range(4):
            result = await loop.run({}, **run_kwargs(make_row(), session))
            outputs.extend(result if isinstance(result, list) else [result])
        return outputs

    return asyncio.run(main())


def micro_batch(outputs, tokenizer, model):
    batch = pad_rollouts(
        [o.prompt_ids for o in outputs], [o.response_ids for o in outputs], [o.response_mask for o in outputs], 0
    )
    data = tu.get_tensordict(
        {
            **batch,
            "advantages": torch.randn(len(outputs), 1) * batch["response_mask"],
            "extra_fields": [dict(o.extra_fields) for o in outputs],
        }
    )
    with torch.no_grad():
        data["old_log_probs"] = response_log_probs(sequence_log_probs(model, batch), batch)
    for key, value in {"dp_size": 1, "batch_num_tokens": None, "global_batch_size": None}.items():
        tu.assign_non_tensor_data(data, key, value)
    return batch, data


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = build_tokenizer("qwen2")
    model = build_tiny_model(tokenizer, "qwen2")
    actor = omega_conf_to_dataclass(trainer_config(*OVERRIDES).actor_rollout_ref.actor)
    outputs = rollouts(tokenizer)
    dialogues = [o for o in outputs if "exgrpo_scenario" in o.extra_fields]
    plain_batch, plain_data = micro_batch(dialogues, tokenizer, model)
    aux_batch, aux_data = micro_batch(outputs, tokenizer, model)

    tokens = {name: int(b["attention_mask"].sum()) for name, b in (("plain", plain_batch), ("aux", aux_batch))}
    print(f"rows: {len(dialogues)} dialogues + {len(outputs) - len(dialogues)} teacher rows")
    print(f"tokens per micro-batch: {tokens['plain']} -> {tokens['aux']} ({tokens['aux'] / tokens['plain']:.2f}x)")

    plain_out = {"log_probs": sequence_log_probs(model, plain_batch).detach()}
    aux_out = {"log_probs": sequence_log_probs(model, aux_batch).detach()}
    loss_plain = timed(lambda: ppo_loss(actor, plain_out, plain_data), args.repeats * 10)
    loss_aux = timed(lambda: exgrpo_actor_loss(actor, aux_out, aux_data, aux_coef=0.1), args.repeats * 10)
    print(f"loss function: ppo_loss {loss_plain * 1e3:.2f} ms, with L_SFT-aux {loss_aux * 1e3:.2f} ms")

    def step(batch, data, loss_fn):
        model.zero_grad()
        loss, _ = loss_fn({"log_probs": sequence_log_probs(model, batch)}, data)
        loss.backward()

    plain_step = timed(lambda: step(plain_batch, plain_data, lambda o, d: ppo_loss(actor, o, d)), args.repeats)
    aux_step = timed(
        lambda: step(aux_batch, aux_data, lambda o, d: exgrpo_actor_loss(actor, o, d, aux_coef=0.1)), args.repeats
    )
    print(f"forward+backward: plain {plain_step * 1e3:.1f} ms, with teacher rows {aux_step * 1e3:.1f} ms")
    print(f"  -> overhead ratio {aux_step / plain_step:.2f}x (tracks the extra tokens)")


if __name__ == "__main__":
    main()
