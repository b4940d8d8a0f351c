"""Rollout overhead: the probe-dialogue loop vs verl's ToolAgentLoop, and r_dsu vs verl's GRPO advantage.

1. CPU overhead per turn: both loops run the same number of assistant turns against the same
   instant scripted server (replies of the same length); the probe loop injects user turns, the
   tool loop injects tool responses of the same length. Goal: ours/tool <= 1.0x per turn, and
   linear in turns (a dialogue with 2x the turns costs <= 2.2x).
2. The r_dsu bonus over 1,024 trajectories (256 groups of 4) vs verl's GRPO advantage on the same
   batch. Goal: <= 1.0x.

    python benchmarks/bench_rollout.py [--dialogues 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import torch
from transformers.utils import get_json_schema
from verl.experimental.agent_loop.agent_loop import ToolListWrap
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.tools.function_tool import FunctionTool
from verl.tools.schemas import OpenAIFunctionToolSchema
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.workers.rollout.replica import TokenOutput

from exgrpo_verl.datasets import Record
from exgrpo_verl.rollout.agent_loop import ProbeDialogueAgentLoop
from exgrpo_verl.rollout.group_rewards import batch_bonus
from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.rollout.standalone import standalone_agent_loop
from exgrpo_verl.schema import build_rl_row
from exgrpo_verl.testing import build_tokenizer
from exgrpo_verl.testing.verl_config import compose_trainer_config

REPLY = "Step: we combine the quantities and check the units carefully. " * 3
INJECTED = "Consider the same situation with one quantity doubled; what changes?"
QUESTION = "A farmer has 12 cows and buys 7 more. How many cows?"


def lookup(topic: str) -> str:
    """Return a follow-up question about a topic.

    Args:
        topic: the topic to ask about.
    """
    return INJECTED


class TurnCountingServer:
    """Instant replies from pre-encoded token ids, chosen by how many turns a trajectory (request
    id) has had, so no server-side work (e.g. decoding the prompt) grows with the dialogue and
    only the loops' own overhead is measured."""

    def __init__(self, tokenizer, turns: int, middle: str, last: str) -> None:
        eos = [tokenizer.eos_token_id]
        self.middle = tokenizer.encode(middle, add_special_tokens=False) + eos
        self.last = tokenizer.encode(last, add_special_tokens=False) + eos
        self.turns = turns
        self.seen: dict[str, int] = {}
        self.calls = 0

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        self.calls += 1
        self.seen[request_id] = self.seen.get(request_id, 0) + 1
        ids = self.last if self.seen[request_id] >= self.turns else self.middle
        return TokenOutput(token_ids=list(ids), stop_reason="completed")


def _config(turns: int):
    return compose_trainer_config(
        [
            "actor_rollout_ref.rollout.prompt_length=512",
            "actor_rollout_ref.rollout.response_length=32768",
            f"actor_rollout_ref.rollout.multi_turn.max_assistant_turns={turns}",
            "actor_rollout_ref.rollout.multi_turn.format=hermes",
            f"+exgrpo.num_probes={turns - 1}",
            "+exgrpo.partial_probes=0",
            "+exgrpo.full_fraction=1.0",
            "+exgrpo.aux_sft_coef=0.0",
        ]
    )


async def _time_loop(make, kwargs_for, dialogues: int) -> float:
    loop = make()
    start = time.perf_counter()
    for index in range(dialogues):
        await loop.run({"temperature": 1.0}, **kwargs_for(index))
    return time.perf_counter() - start


def time_probe_loop(tokenizer, turns: int, dialogues: int) -> float:
    config = _config(turns)
    probes = [{"rule": f"r{i}", "question": INJECTED, "teacher_answer": None} for i in range(turns - 1)]
    row = build_rl_row(Record("q", "gsm8k", QUESTION, "19", "train"), 0, probes)
    server = TurnCountingServer(tokenizer, turns, REPLY, REPLY + " \\boxed{19}")

    def make():
        return standalone_agent_loop(ProbeDialogueAgentLoop, config, server, tokenizer, "qwen2")

    def kwargs_for(index: int) -> dict:
        return {"raw_prompt": row["prompt"], "extra_info": row["extra_info"], "session_id": 0, "exgrpo_group_size": 1}

    elapsed = asyncio.run(_time_loop(make, kwargs_for, dialogues))
    assert server.calls == turns * dialogues
    return elapsed


def time_tool_loop(tokenizer, turns: int, dialogues: int) -> float:
    config = _config(turns)
    tool = FunctionTool(
        name="lookup", fn=lookup, tool_schema=OpenAIFunctionToolSchema.model_validate(get_json_schema(lookup))
    )
    tool_call = '<tool_call>{"name": "lookup", "arguments": {"topic": "cows"}}</tool_call>'
    server = TurnCountingServer(tokenizer, turns, REPLY + tool_call, REPLY + " \\boxed{19}")
    prompt = [{"role": "user", "content": QUESTION}]

    def make():
        return standalone_agent_loop(ToolAgentLoop, config, server, tokenizer, "qwen2", tools=ToolListWrap([tool]))

    elapsed = asyncio.run(_time_loop(make, lambda index: {"raw_prompt": prompt}, dialogues))
    assert server.calls == turns * dialogues, (server.calls, turns * dialogues)
    return elapsed


def best(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def bench_bonus(repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    groups, size, width = 256, 4, 512
    uids = np.repeat(np.arange(groups), size).astype(str).astype(object)
    outcomes = rng.integers(0, 2, groups * size).astype(float).tolist()
    scenarios = (["full", "full", "partial", "partial"] * groups)[: groups * size]
    settings = ExGRPOSettings()
    rewards = torch.zeros(groups * size, width)
    rewards[:, -1] = torch.tensor(outcomes)
    mask = torch.ones(groups * size, width)

    def ours() -> float:
        start = time.perf_counter()
        bonuses, _ = batch_bonus(outcomes, scenarios, uids, settings)
        rewards[:, -1] += torch.tensor(bonuses)
        elapsed = time.perf_counter() - start
        rewards[:, -1] -= torch.tensor(bonuses)
        return elapsed

    def grpo() -> float:
        start = time.perf_counter()
        compute_grpo_outcome_advantage(rewards, mask, index=uids)
        return time.perf_counter() - start

    return best(ours, repeats), best(grpo, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tokenizer = build_tokenizer("qwen2")
    print(f"per-turn CPU overhead, {args.dialogues} dialogues, best of {args.repeats} (scripted server, no generation)")
    results = {}
    for turns in (4, 8):
        ours = best(lambda turns=turns: time_probe_loop(tokenizer, turns, args.dialogues), args.repeats)
        tool = best(lambda turns=turns: time_tool_loop(tokenizer, turns, args.dialogues), args.repeats)
        per_turn = [t / (args.dialogues * turns) * 1e3 for t in (ours, tool)]
        results[turns] = ours
        print(
            f"  {turns} assistant turns: probe loop {per_turn[0]:.2f} ms/turn, ToolAgentLoop {per_turn[1]:.2f} ms/turn"
            f"  -> ratio {ours / tool:.2f}x (goal <= 1.0x)"
        )
    print(f"  linearity: 8 turns / 4 turns = {results[8] / results[4]:.2f}x time (goal <= 2.2x)")
    ours, grpo = bench_bonus(max(args.repeats, 5))
    print(f"r_dsu over 1,024 trajectories: {ours * 1e3:.2f} ms; verl GRPO advantage: {grpo * 1e3:.2f} ms")
    print(f"  -> ratio {ours / grpo:.2f}x (goal <= 1.0x)")


if __name__ == "__main__":
    main()
