"""The plain-GRPO arm's training rows: the questions of ``rl_train.parquet`` alone, single turn.

An RL row's ``prompt`` is already the question turn (the probes live in ``extra_info``), so a
single-turn row is the same row with verl's ``single_turn_agent`` and without the probe list: plain
GRPO sees exactly the questions, gold answers and reward routing ExGRPO sees.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from exgrpo_verl.ablation.arms import AblationError
from exgrpo_verl.schema import PROBES_KEY, SINGLE_TURN_AGENT_NAME

REQUIRED_COLUMNS = ("data_source", "prompt", "reward_model", "extra_info")


def single_turn_rows(rows: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    missing = [column for column in REQUIRED_COLUMNS if column not in rows.columns]
    if missing:
        raise AblationError(f"{source}: not an RL parquet (no column {', '.join(missing)})")
    if rows.empty:
        raise AblationError(f"{source}: has no rows")
    out = rows.copy()
    out["agent_name"] = SINGLE_TURN_AGENT_NAME
    extra = []
    for position, info in enumerate(rows["extra_info"]):
        if not isinstance(info, Mapping):
            raise AblationError(f"{source}: row {position}: extra_info must be a mapping, got {type(info).__name__}")
        extra.append({key: value for key, value in info.items() if key != PROBES_KEY})
    out["extra_info"] = extra
    return out


def write_single_turn_rows(source: Path, target: Path) -> bool:
    """Write ``target`` from ``source`` unless it is already newer; True when written."""
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return False
    try:
        rows = pd.read_parquet(source)
    except Exception as error:  # noqa: BLE001  (pyarrow raises several types for a bad file)
        raise AblationError(f"{source}: cannot read it as parquet ({error})") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    single_turn_rows(rows, source).to_parquet(partial, index=False)
    os.replace(partial, target)
    return True
