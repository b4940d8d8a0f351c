"""``python -m exgrpo_verl preview``: run the real probe-dialogue agent loop on the CPU with a local
Hugging Face model for a few RL rows, and show what ExGRPO would train on: every dialogue, the
final answers, R_outcome, each group's P_full / P_partial / r_dsu, and verl's GRPO advantages.
This is how to check probes, prompts and rewards before spending GPU hours.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import textwrap
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", required=True, help="RL parquet written by the EI pipeline (train split)")
    parser.add_argument("--model", required=True, help="local Hugging Face model directory (the student)")
    parser.add_argument("-n", "--group-size", type=int, default=4, help="trajectories per question (rollout.n)")
    parser.add_argument("--rows", type=int, default=2, help="how many questions to preview")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--response-length", type=int, default=2048, help="rollout.response_length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hydra override of the trainer config, e.g. ++exgrpo.num_probes=3 (repeatable)",
    )


REVEALS_MARK = "reveals answer"


def _turns(tokenizer: Any, output: Any) -> list[tuple[str, str]]:
    """(role, text) pairs of a dialogue: the prompt, then mask-0 (injected) and mask-1 (student) runs.
    A user turn that asks a probe flagged reveals_answer is marked."""
    turns = [("user", tokenizer.decode(output.prompt_ids, skip_special_tokens=True))]
    start = 0
    for flag, run in itertools.groupby(output.response_mask):
        length = len(list(run))
        text = tokenizer.decode(output.response_ids[start : start + length], skip_special_tokens=True)
        turns.append(("student" if flag else "user", text))
        start += length
    flags = list(output.extra_fields.get("exgrpo_probe_reveals") or [])
    user_turns = [index for index, (role, _) in enumerate(turns) if role == "user"]
    for probe, index in enumerate(user_turns[: len(flags)]):
        if flags[probe]:
            turns[index] = (f"user, {REVEALS_MARK}", turns[index][1])
    return turns


def _rules(rules: list[str], flags: list[bool]) -> str:
    """The rules of the asked probes, a flagged one marked: "cause, inverse (reveals answer)"."""
    marked = [f"{rule} ({REVEALS_MARK})" if flag else rule for rule, flag in zip(rules, flags, strict=False)]
    return ", ".join(marked + list(rules[len(marked) :])) or "none"


def _row_probes(row: dict) -> str:
    """One line on a row's probes: how many, which reveal the answer, and whether the rollout asks them."""
    from exgrpo_verl.schema import parse_probes

    probes = parse_probes(row["extra_info"], row["extra_info"].get("index", "?"))
    flagged = [p["rule"] for p in probes if p.get("reveals_answer")]
    unknown = sum(p.get("reveals_answer") is None for p in probes)
    line = f"{len(probes)} probes, {len(flagged)} flagged {REVEALS_MARK}"
    if flagged:
        line += f" ({', '.join(flagged)})"
    if unknown:
        line += f", {unknown} without the flag (built before it existed)"
    return line


def _show(text: str, width: int = 100) -> str:
    text = "".join(ch if ch.isprintable() or ch.isspace() else "·" for ch in text)
    text = " ".join(text.split())
    return textwrap.shorten(text, width=width * 3, placeholder=" …") if text else "(empty)"


async def _rollouts(config: Any, server: Any, tokenizer: Any, rows: list[dict], n: int, temperature: float) -> list:
    from exgrpo_verl.rollout.agent_loop import GROUP_SIZE_KEY, SESSION_KEY, ProbeDialogueAgentLoop
    from exgrpo_verl.rollout.standalone import standalone_agent_loop

    model_type = getattr(server.model.config, "model_type", None)
    loop = standalone_agent_loop(ProbeDialogueAgentLoop, config, server, tokenizer, model_type)
    groups = []
    for row in rows:
        kwargs = {"raw_prompt": list(row["prompt"]), "extra_info": row["extra_info"], GROUP_SIZE_KEY: n}
        group = []
        for session in range(n):
            result = await loop.run({"temperature": temperature}, **kwargs, **{SESSION_KEY: session})
            group.append(result[-1] if isinstance(result, list) else result)  # teacher rows come first
        groups.append(group)
    return groups


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from exgrpo_verl.local.hf_server import HFGenerateServer
    from exgrpo_verl.reward import compute_score
    from exgrpo_verl.rollout.managers import apply_bonus_to_outputs
    from exgrpo_verl.rollout.settings import ExGRPOSettings
    from exgrpo_verl.testing.verl_config import compose_trainer_config

    if not Path(args.model).is_dir():
        raise SystemExit(f"--model {args.model!r} is not a local model directory")
    frame = pd.read_parquet(args.data)
    missing = {"prompt", "extra_info", "data_source", "reward_model"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{args.data}: not an RL parquet (missing columns {sorted(missing)})")
    rows = frame.head(args.rows).to_dict("records")
    torch.manual_seed(args.seed)
    config = compose_trainer_config(
        [
            f"actor_rollout_ref.model.path={args.model}",
            f"actor_rollout_ref.rollout.n={args.group_size}",
            f"actor_rollout_ref.rollout.response_length={args.response_length}",
            *args.override,
        ]
    )
    settings = ExGRPOSettings.from_trainer_config(config)
    server = HFGenerateServer.from_pretrained(args.model, response_length=args.response_length)
    groups = asyncio.run(_rollouts(config, server, server.tokenizer, rows, args.group_size, args.temperature))

    print(f"ExGRPO preview: {len(rows)} question(s) x {args.group_size} trajectories; settings: {settings}")
    for row_index, (row, outputs) in enumerate(zip(rows, groups, strict=True)):
        gold = row["reward_model"]["ground_truth"]
        for output in outputs:
            solution = server.tokenizer.decode(output.response_ids, skip_special_tokens=True)
            extra = {**dict(row["extra_info"]), **output.extra_fields}
            output.reward_score = compute_score(row["data_source"], solution, gold, extra)["score"]
        outcomes = [o.reward_score for o in outputs]
        group = apply_bonus_to_outputs(outputs, settings)
        rewards = torch.zeros(len(outputs), 1)
        rewards[:, 0] = torch.tensor([o.reward_score for o in outputs])
        advantages, _ = compute_grpo_outcome_advantage(
            rewards, torch.ones_like(rewards), index=np.zeros(len(outputs), dtype=object)
        )
        print(f"\n=== Question {row_index} [{row['data_source']}] gold: {gold}")
        print(f"    {_show(row['prompt'][-1]['content'])}")
        print(f"    {_row_probes(row)}; exgrpo.revealing_probes={settings.revealing_probes}")
        for session, (output, outcome) in enumerate(zip(outputs, outcomes, strict=True)):
            fields = output.extra_fields
            print(
                f"\n--- Trajectory {session}: Scenario {fields['exgrpo_scenario']} "
                f"({fields['exgrpo_num_probes']} probes: "
                f"{_rules(list(fields['exgrpo_probe_rules']), list(fields.get('exgrpo_probe_reveals') or []))})"
                + (" [truncated]" if fields["exgrpo_truncated"] else "")
            )
            for role, text in _turns(server.tokenizer, output):
                print(f"  [{role}] {_show(text)}")
            print(f"  Final answer: {_show(fields['final_response'])}")
            print(
                f"  R_outcome: {outcome:g}  r_dsu: {fields['reward_extra_info']['exgrpo_bonus']:g}  "
                f"reward: {output.reward_score:g}  GRPO advantage: {advantages[session, 0].item():+.3f}"
            )
        p_full = f"{group.p_full:.3f}" if group.p_full is not None else "n/a"
        p_partial = f"{group.p_partial:.3f}" if group.p_partial is not None else "n/a"
        print(
            f"\n  Group: P_full {p_full}  P_partial {p_partial}  "
            f"r_dsu {'fired' if group.fired else 'did not fire'} "
            f"(delta={settings.dsu_delta}, nu={settings.dsu_nu})"
        )
    return 0
