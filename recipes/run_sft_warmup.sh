#!/usr/bin/env bash
# Stage 2, SFT warm-up: verl's SFT trainer (torchrun -m verl.trainer.sft_trainer) with
# recipes/sft_warmup.yaml. It writes checkpoints/exgrpo/sft_$STUDENT/global_step_<N>/huggingface
# (Megatron: .../global_step_<N>/model/huggingface), which run_exgrpo_*.sh start from.
#
# Environment (DATA_DIR or SFT_FILES is required; an unset variable leaves the recipe's value):
#   DATA_DIR       EI output folder holding sft_train.parquet
#   SFT_FILES      SFT parquet(s), comma-separated (default $DATA_DIR/sft_train.parquet)
#   SFT_VAL_FILES  optional held-out SFT parquet(s) for a validation loss
#   STUDENT        qwen2_5_7b_instruct (default) | gemma_7b_it | llama3_1_8b_instruct | smoke | cpu
#                  (cpu: no GPU needed; runs verl on the plug-in's CPU platform and hf rollout)
#   MODEL_PATH     start from this model instead of the student's hub model
#   EXPERIMENT     trainer.experiment_name (default sft_$STUDENT); CKPT_DIR: trainer.default_local_dir
#   ENGINE         fsdp (default) | megatron; TP, PP, CP: Megatron's parallel sizes
#   GPUS_PER_NODE  processes per node (default: the visible GPUs); NNODES (default 1)
#   NODE_RANK, MASTER_ADDR, MASTER_PORT   required on every node when NNODES > 1 (port default 29500)
#   PYTHON         the interpreter that runs everything (default: python on PATH); torchrun is
#                  "$PYTHON -m torch.distributed.run" unless TORCHRUN names another launcher
#   DRY_RUN=1      print the command instead of running it
# Arguments are hydra overrides appended to the command.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STUDENT="${STUDENT:-qwen2_5_7b_instruct}"
ENGINE="${ENGINE:-fsdp}"
[[ "$STUDENT" != cpu || "$ENGINE" == fsdp ]] || die "STUDENT=cpu trains with FSDP on the CPU: unset ENGINE"
dir="$(recipes_dir)"
[[ -f "$dir/sft_student/$STUDENT.yaml" ]] || die "STUDENT=$STUDENT: no $dir/sft_student/$STUDENT.yaml"
if [[ -z "${SFT_FILES:-}" ]]; then
    [[ -n "${DATA_DIR:-}" ]] || die "set DATA_DIR (the EI output folder) or SFT_FILES"
fi
train="$(file_list SFT_FILES "${SFT_FILES:-$DATA_DIR/sft_train.parquet}")"

NNODES="${NNODES:-1}"
if [[ "$STUDENT" == cpu ]]; then
    GPUS_PER_NODE="${GPUS_PER_NODE:-1}"
else
    GPUS_PER_NODE="${GPUS_PER_NODE:-$(visible_gpus)}"
fi
if ((NNODES > 1)); then
    [[ -n "${NODE_RANK:-}" && -n "${MASTER_ADDR:-}" ]] || die "NNODES=$NNODES needs NODE_RANK and MASTER_ADDR"
    launch=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
        --master_port="${MASTER_PORT:-29500}")
else
    launch=(--standalone --nnodes=1)
fi

# torchrun through the interpreter the scripts were given, so PYTHON=/path/to/venv/bin/python is enough
# (an environment that is not activated has no torchrun on PATH); TORCHRUN names another launcher
if [[ -n "${TORCHRUN:-}" ]]; then
    read -r -a torchrun <<<"$TORCHRUN"
else
    torchrun=("$PYTHON" -m torch.distributed.run)
fi
CMD=("${torchrun[@]}" "${launch[@]}" --nproc_per_node="$GPUS_PER_NODE" -m verl.trainer.sft_trainer
    --config-path "$dir" --config-name sft_warmup "sft_student=$STUDENT" "data.train_files=$train"
    "trainer.nnodes=$NNODES" "trainer.n_gpus_per_node=$GPUS_PER_NODE")
[[ -z "${SFT_VAL_FILES:-}" ]] || CMD+=("data.val_files=$(file_list SFT_VAL_FILES "$SFT_VAL_FILES")")
[[ -z "${MODEL_PATH:-}" ]] || CMD+=("model.path=$MODEL_PATH")
[[ -z "${EXPERIMENT:-}" ]] || CMD+=("trainer.experiment_name=$EXPERIMENT")
[[ -z "${CKPT_DIR:-}" ]] || CMD+=("trainer.default_local_dir=$(absolute "$CKPT_DIR")")
case "$ENGINE" in
    fsdp)
        refuse_vars "ENGINE=fsdp has no tensor/pipeline/context parallel sizes (use ENGINE=megatron)" TP PP CP
        ;;
    megatron)
        CMD+=(engine=megatron optim=megatron)
        [[ -z "${TP:-}" ]] || CMD+=("engine.tensor_model_parallel_size=$TP")
        [[ -z "${PP:-}" ]] || CMD+=("engine.pipeline_model_parallel_size=$PP")
        [[ -z "${CP:-}" ]] || CMD+=("engine.context_parallel_size=$CP")
        ;;
    *) die "ENGINE must be fsdp or megatron, got $ENGINE" ;;
esac
CMD+=("$@")
cpu_platform_prefix
run_command "${CMD[@]}"
