#!/usr/bin/env bash
# Print the Hugging Face folder of the latest checkpoint in a verl run folder (SFT or ExGRPO, FSDP or
# Megatron), e.g. for eval:  bash recipes/latest_hf.sh checkpoints/exgrpo/exgrpo_qwen2_5_7b_instruct
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(($# == 1)) || die "usage: latest_hf.sh RUN_DIR"
latest_hf_checkpoint "$1"
