"""Build a verl agent loop outside verl's agent-loop worker (preview, tests, benchmarks).

verl's worker instantiates loops through hydra with the trainer config, a server client, the
tokenizer and the dataset settings; this does the same with a given server. Call it inside a
running event loop: verl's loops bind the running loop at construction.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, DictConfigWrap
from verl.utils.dataset.rl_dataset import RLHFDataset


def standalone_agent_loop(
    loop_cls: type[AgentLoopBase], config: Any, server: Any, tokenizer: Any, hf_model_type: str | None, **extra: Any
) -> AgentLoopBase:
    return loop_cls(
        trainer_config=DictConfigWrap(config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        hf_model_type=hf_model_type,
        **extra,
    )
