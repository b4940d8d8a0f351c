"""Building probe-dialogue agent loops and rows for tests."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from exgrpo_verl.datasets import Record
from exgrpo_verl.rollout.agent_loop import ProbeDialogueAgentLoop
from exgrpo_verl.rollout.standalone import standalone_agent_loop
from exgrpo_verl.schema import build_rl_row
from exgrpo_verl.testing.tiny import CHAT_STYLES
from exgrpo_verl.testing.verl_config import compose_trainer_config

QUESTION = "Tom has 2 apples and buys 3 more. How many apples does he have?"
PROBES = [
    {"rule": "decomposition", "question": "How many apples did Tom start with?", "teacher_answer": "2"},
    {
        "rule": "inverse",
        "question": "If he ends with 5 and bought 3, how many did he start with?",
        "teacher_answer": None,
    },
    {"rule": "step_justification", "question": "Why do we add here?", "teacher_answer": "Buying increases the count."},
    {"rule": "counterfactual", "question": "What if he bought 4 more?", "teacher_answer": "6"},
    {"rule": "cause", "question": "What causes the total to change?", "teacher_answer": None},
    {"rule": "analogy", "question": "Give a similar problem.", "teacher_answer": None},
]


@lru_cache(maxsize=16)
def trainer_config(*overrides: str):
    base = (
        "actor_rollout_ref.rollout.prompt_length=256",
        "actor_rollout_ref.rollout.response_length=2048",
        "actor_rollout_ref.rollout.n=4",
        "+exgrpo.num_probes=3",
        "+exgrpo.partial_probes=1",
        "+exgrpo.probe_max_tokens=64",
        "+exgrpo.final_max_tokens=96",
        "+exgrpo.aux_sft_coef=0.0",
    )
    return compose_trainer_config([*base, *overrides])


def make_loop(tokenizer, server, style: str = "qwen2", overrides: tuple[str, ...] = ()) -> ProbeDialogueAgentLoop:
    config = trainer_config(*overrides)
    return standalone_agent_loop(ProbeDialogueAgentLoop, config, server, tokenizer, CHAT_STYLES[style]["model_type"])


def run_dialogues(tokenizer, server, jobs, style: str = "qwen2", overrides: tuple[str, ...] = (), **params) -> list:
    """Run the loop on (row, session_id) jobs, one after the other. verl's agent loops bind the
    running event loop at construction, so the loop is built inside it."""

    async def main():
        loop = make_loop(tokenizer, server, style, overrides)
        return [await loop.run({"temperature": 1.0, **params}, **run_kwargs(row, session)) for row, session in jobs]

    return asyncio.run(main())


def make_row(probes=PROBES, index: int = 0, answer: str = "5") -> dict:
    record = Record(id=f"q{index}", data_source="gsm8k", question=QUESTION, answer=answer, split="train")
    return build_rl_row(record, index, probes)


def run_kwargs(row: dict, session_id: int, group_size: int = 4) -> dict:
    return {
        "raw_prompt": row["prompt"],
        "extra_info": row["extra_info"],
        "data_source": row["data_source"],
        "reward_model": row["reward_model"],
        "session_id": session_id,
        "exgrpo_group_size": group_size,
    }
