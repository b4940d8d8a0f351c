#!/usr/bin/env bash
# Plain GRPO on FSDP (the ablation's baseline): stock `python -m verl.trainer.main_ppo` with
# recipes/grpo_fsdp.yaml, from the same start model as ExGRPO (MODEL_PATH, else the latest SFT checkpoint).
#
# The environment of run_exgrpo_fsdp.sh, except that TRAIN_FILES is required and must hold single-turn
# rows (agent_name single_turn_agent), e.g. the grpo_train.parquet `python -m exgrpo_verl ablation`
# writes from rl_train.parquet; EXPERIMENT defaults to grpo_$STUDENT.
# Arguments are hydra overrides appended to the command.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

refuse_vars "FSDP has no tensor/pipeline/context parallel sizes" TP PP CP
[[ -n "${TRAIN_FILES:-}" ]] || die "set TRAIN_FILES: single-turn rows of the RL questions (rl_train.parquet holds probe-dialogue rows)"
EXPERIMENT="${EXPERIMENT:-grpo_${STUDENT:-qwen2_5_7b_instruct}}"
exgrpo_command grpo_fsdp
CMD+=("$@")
cpu_platform_prefix
run_command "${CMD[@]}"
