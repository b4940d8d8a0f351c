# Helpers shared by the run scripts (sourced, not run).

PYTHON="${PYTHON:-python}"

die() {
    echo "error: $*" >&2
    exit 2
}

# The folder holding the recipe YAMLs: this script's own folder in any install, else ask the package.
recipes_dir() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    if [[ -f "$here/exgrpo_common.yaml" ]]; then
        echo "$here"
    else
        "$PYTHON" -m exgrpo_verl paths recipes_dir
    fi
}

# Absolute form of a local path (remote URIs such as hdfs://... pass through).
absolute() {
    if [[ "$1" == *://* ]]; then echo "$1"; else realpath -m -- "$1"; fi
}

# "a.parquet,b.parquet" -> a hydra value: one path, or a [list] of absolute paths; each must exist.
file_list() {
    local name="$1" value="$2" out=() items=() item
    IFS=',' read -r -a items <<<"$value"
    for item in "${items[@]}"; do
        [[ -n "$item" ]] || continue
        item="$(absolute "$item")"
        [[ "$item" == *://* || -f "$item" ]] || die "$name: no such file: $item"
        out+=("$item")
    done
    ((${#out[@]})) || die "$name is empty"
    if ((${#out[@]} == 1)); then
        echo "${out[0]}"
    else
        local IFS=','
        echo "[${out[*]}]"
    fi
}

# The Hugging Face copy in the latest checkpoint of a verl run folder (SFT or RL, FSDP or Megatron).
latest_hf_checkpoint() {
    local run_dir="$1" tracker step folder candidate
    tracker="$run_dir/latest_checkpointed_iteration.txt"
    [[ -f "$tracker" ]] || die "no checkpoint in $run_dir (no latest_checkpointed_iteration.txt)"
    step="$(tr -d '[:space:]' <"$tracker")"
    folder="$run_dir/global_step_$step"
    for candidate in "$folder/huggingface" "$folder/model/huggingface" "$folder/actor/huggingface" \
        "$folder/actor/model/huggingface"; do
        if [[ -f "$candidate/config.json" ]] && compgen -G "$candidate/*.safetensors" >/dev/null; then
            absolute "$candidate"
            return 0
        fi
    done
    die "no Hugging Face weights under $folder (was 'hf_model' in checkpoint.save_contents?)"
}

# Refuse parallel sizes the chosen backend does not have, instead of silently ignoring them.
refuse_vars() {
    local why="$1" var
    shift
    for var in "$@"; do
        [[ -z "${!var:-}" ]] || die "$var is set, but $why"
    done
}

# GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists, else 1.
visible_gpus() {
    local count=0
    if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        count="$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)" || true
    else
        count="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU')" || true
    fi
    ((count > 0)) && echo "$count" || echo 1
}

# STUDENT=cpu runs on the plug-in's CPU platform even where a GPU is visible. Ray starts its actors
# with one torch thread unless OMP_NUM_THREADS is set; verl's trainer and the hf rollout take turns,
# so each may use every core. glibc's allocator otherwise returns large freed blocks to the OS and
# page-faults them in again every step: the same MALLOC_* settings as the cpu student gives Ray's
# workers (recipes/student/cpu.yaml, ray_kwargs.ray_init.runtime_env), here for torchrun's processes.
cpu_platform_prefix() {
    if [[ "${STUDENT:-}" == cpu ]]; then
        CMD=(env VERL_PLATFORM=cpu "OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}"
            "MALLOC_MMAP_MAX_=${MALLOC_MMAP_MAX_:-0}" "MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-68719476736}"
            "MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-1073741824}" "${CMD[@]}")
    fi
}

# Print the command (DRY_RUN=1) or replace this shell with it, once the plug-in's preflight has
# checked it: training data with fewer rows than one batch stops here with one line, not inside verl.
run_command() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$PYTHON" -m exgrpo_verl preflight -- "$@" || exit $?
        exec "$@"
    fi
}

# Stage 3: fills CMD with `python -m verl.trainer.main_ppo` for the recipe $1, from the environment
# variables the run_exgrpo_*.sh scripts document; the caller appends backend keys and "$@".
exgrpo_command() {
    local recipe="$1" dir train val
    STUDENT="${STUDENT:-qwen2_5_7b_instruct}"
    dir="$(recipes_dir)"
    [[ -f "$dir/student/$STUDENT.yaml" ]] || die "STUDENT=$STUDENT: no $dir/student/$STUDENT.yaml"

    if [[ -z "${TRAIN_FILES:-}" || -z "${VAL_FILES:-}" ]]; then
        [[ -n "${DATA_DIR:-}" ]] || die "set DATA_DIR (the EI output folder) or TRAIN_FILES and VAL_FILES"
    fi
    train="$(file_list TRAIN_FILES "${TRAIN_FILES:-$DATA_DIR/rl_train.parquet}")"
    val="$(file_list VAL_FILES "${VAL_FILES:-$DATA_DIR/val.parquet}")"

    if [[ -z "${MODEL_PATH:-}" ]]; then
        SFT_DIR="${SFT_DIR:-checkpoints/exgrpo/sft_$STUDENT}"
        if [[ -f "$SFT_DIR/latest_checkpointed_iteration.txt" ]]; then
            MODEL_PATH="$(latest_hf_checkpoint "$SFT_DIR")"
        elif [[ "$STUDENT" != smoke && "$STUDENT" != cpu ]]; then
            die "no SFT checkpoint in $SFT_DIR: run run_sft_warmup.sh with STUDENT=$STUDENT first, or set MODEL_PATH or SFT_DIR"
        fi
    fi

    CMD=("$PYTHON" -m verl.trainer.main_ppo --config-path "$dir" --config-name "$recipe"
        "student=$STUDENT" "data.train_files=$train" "data.val_files=$val")
    [[ -z "${MODEL_PATH:-}" ]] || CMD+=("actor_rollout_ref.model.path=$(absolute "$MODEL_PATH")")
    [[ -z "${EXPERIMENT:-}" ]] || CMD+=("trainer.experiment_name=$EXPERIMENT")
    [[ -z "${CKPT_DIR:-}" ]] || CMD+=("trainer.default_local_dir=$(absolute "$CKPT_DIR")")
    [[ -z "${NNODES:-}" ]] || CMD+=("trainer.nnodes=$NNODES")
    [[ -z "${GPUS_PER_NODE:-}" ]] || CMD+=("trainer.n_gpus_per_node=$GPUS_PER_NODE")
    [[ -z "${ROLLOUT_TP:-}" ]] || CMD+=("actor_rollout_ref.rollout.tensor_model_parallel_size=$ROLLOUT_TP")
}
