#!/usr/bin/env bash
# Stage 3, ExGRPO on FSDP: stock `python -m verl.trainer.main_ppo` with recipes/exgrpo_fsdp.yaml.
#
# Environment (DATA_DIR, or TRAIN_FILES and VAL_FILES, is required; the rest is optional and an
# unset variable leaves the recipe's value):
#   DATA_DIR       EI output folder holding rl_train.parquet and val.parquet
#   TRAIN_FILES    RL parquet(s), comma-separated (default $DATA_DIR/rl_train.parquet)
#   VAL_FILES      single-turn val parquet(s), comma-separated (default $DATA_DIR/val.parquet)
#   STUDENT        qwen2_5_7b_instruct (default) | gemma_7b_it | llama3_1_8b_instruct | smoke | cpu
#                  (cpu: no GPU needed; runs verl on the plug-in's CPU platform and hf rollout)
#   MODEL_PATH     Hugging Face folder to start from; default: the latest SFT checkpoint's copy in SFT_DIR
#   SFT_DIR        the SFT run folder (default checkpoints/exgrpo/sft_$STUDENT)
#   EXPERIMENT     trainer.experiment_name (default exgrpo_$STUDENT); CKPT_DIR: trainer.default_local_dir
#   NNODES, GPUS_PER_NODE   trainer.nnodes, trainer.n_gpus_per_node (start Ray on every node first)
#   ROLLOUT_TP     the rollout engine's tensor parallel size
#   DRY_RUN=1      print the command instead of running it
# Arguments are hydra overrides appended to the command (they win over everything above).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

refuse_vars "FSDP has no tensor/pipeline/context parallel sizes (use run_exgrpo_megatron.sh)" TP PP CP
exgrpo_command exgrpo_fsdp
CMD+=("$@")
cpu_platform_prefix
run_command "${CMD[@]}"
