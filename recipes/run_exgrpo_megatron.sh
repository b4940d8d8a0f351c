#!/usr/bin/env bash
# Stage 3, ExGRPO on Megatron-LM: stock `python -m verl.trainer.main_ppo` with recipes/exgrpo_megatron.yaml.
#
# The environment of run_exgrpo_fsdp.sh (DATA_DIR, TRAIN_FILES, VAL_FILES, STUDENT, MODEL_PATH,
# SFT_DIR, EXPERIMENT, CKPT_DIR, NNODES, GPUS_PER_NODE, ROLLOUT_TP, DRY_RUN), plus:
#   TP, PP, CP     the actor's tensor / pipeline / context parallel sizes (the reference model follows);
#                  NNODES * GPUS_PER_NODE must be a multiple of TP * PP * CP
# Arguments are hydra overrides appended to the command.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ "${STUDENT:-}" != cpu ]] || die "STUDENT=cpu trains with FSDP on the CPU: use run_exgrpo_fsdp.sh"
exgrpo_command exgrpo_megatron
megatron="actor_rollout_ref.actor.megatron"
[[ -z "${TP:-}" ]] || CMD+=("$megatron.tensor_model_parallel_size=$TP")
[[ -z "${PP:-}" ]] || CMD+=("$megatron.pipeline_model_parallel_size=$PP")
[[ -z "${CP:-}" ]] || CMD+=("$megatron.context_parallel_size=$CP")
CMD+=("$@")
run_command "${CMD[@]}"
