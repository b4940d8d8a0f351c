"""The arms of the ablation: what each trains, from which model, with which recipe settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AblationError(ValueError):
    """A bad argument or input of the ablation, said in terms of the flag or file at fault."""


@dataclass(frozen=True)
class Arm:
    name: str
    meaning: str
    # run script of the recipe that trains it (recipes/); None: the start model is evaluated as is
    script: str | None = None
    # hydra overrides that make the arm; applied last, so they win over the user's overrides
    overrides: tuple[str, ...] = ()
    # trains from --base-model instead of --sft-model
    from_base: bool = False
    # trains on single-turn rows (the questions of rl_train.parquet alone)
    single_turn: bool = False


ARMS: tuple[Arm, ...] = (
    Arm("sft", "the start model (--sft-model, e.g. the SFT warm-up checkpoint), evaluated as is"),
    Arm(
        "grpo",
        "verl's plain single-turn GRPO on the same questions with our reward (grpo_fsdp recipe)",
        script="run_grpo_fsdp.sh",
        # no probe dialogue runs, so these are unused; set so its config never shows an ExGRPO term on
        overrides=("exgrpo.dsu_delta=0", "exgrpo.aux_sft_coef=0"),
        single_turn=True,
    ),
    Arm(
        "exgrpo_plain",
        "GRPO over probe dialogues, no r_dsu bonus (delta = 0), no L_SFT-aux (lambda = 0)",
        script="run_exgrpo_fsdp.sh",
        overrides=("exgrpo.dsu_delta=0", "exgrpo.aux_sft_coef=0"),
    ),
    Arm(
        "exgrpo_aux",
        "probe dialogues with L_SFT-aux (the recipe's lambda), no r_dsu bonus (delta = 0)",
        script="run_exgrpo_fsdp.sh",
        overrides=("exgrpo.dsu_delta=0",),
    ),
    Arm("exgrpo", "the full method: probe dialogues, r_dsu bonus and L_SFT-aux", script="run_exgrpo_fsdp.sh"),
    Arm(
        "exgrpo_no_sft",
        "the full method from --base-model, without the SFT warm-up",
        script="run_exgrpo_fsdp.sh",
        from_base=True,
    ),
)
ARMS_BY_NAME = {arm.name: arm for arm in ARMS}
DEFAULT_ARMS = ("sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo")


def select_arms(spec: str | None, base_model: str | None) -> list[Arm]:
    """The arms a comma-separated ``--arms`` names, in the table's order. Without ``--arms``: the five
    main arms, plus exgrpo_no_sft when a base model is given."""
    if spec is None:
        names: Sequence[str] = [*DEFAULT_ARMS, "exgrpo_no_sft"] if base_model else DEFAULT_ARMS
    else:
        names = [token.strip() for token in spec.split(",") if token.strip()]
        unknown = [name for name in names if name not in ARMS_BY_NAME]
        if unknown:
            raise AblationError(f"--arms: unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS_BY_NAME)}")
        if not names:
            raise AblationError("--arms names no arm")
    chosen = [arm for arm in ARMS if arm.name in names]
    if any(arm.from_base for arm in chosen) and not base_model:
        raise AblationError("arm exgrpo_no_sft trains from --base-model: pass --base-model PATH (the model before SFT)")
    return chosen
