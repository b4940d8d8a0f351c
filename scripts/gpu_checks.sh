#!/usr/bin/env bash
# Run the tests marked `gpu` on a CUDA machine that has PyTorch and transformers but no internet,
# including the ExGRPO smoke run through stock main_ppo with the hf rollout (tests/test_e2e_gpu.py).
#
#   scripts/gpu_checks.sh prepare   # here, with PyPI: wheels for Python 3.12 into .whl/ (< 64 MiB)
#   scripts/gpu_checks.sh run       # there: install .whl/ into /tmp/site, run pytest -m gpu
#
# The wheel set is verl and what it imports that such an image lacks (no vLLM, no SGLang); Ray's
# Java jars and dashboard front end are dropped from its wheel to fit the size limit (Python-only
# Ray does not use them). The project itself travels as a wheel so its verl plug-in entry point is
# registered.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
PY_TAGS=(--python-version 3.12 --implementation cp --abi cp312 --only-binary=:all:
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64)
PACKAGES=(
  verl==0.9.1 ray==2.60.0 tensordict==0.10.0 pyvers==0.1.0 torchdata==0.11.0 TransferQueue==0.1.11
  omegaconf==2.3.1 hydra-core==1.3.8 codetiming==1.4.0
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 cachetools==8.0.2 fastapi==0.165.0 starlette==1.10.0
  uvicorn==0.54.0 msgspec==0.22.0 pyzmq==27.3.0 colorful==0.5.8 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 orjson==3.13.0
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
  opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-prometheus==0.66b2
  opentelemetry-exporter-otlp-proto-common==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2
  opentelemetry-exporter-http-transport==0.66b2 opentelemetry-exporter-otlp-common==0.66b2
  google-api-core==2.44.0 google-auth==2.63.0 googleapis-common-protos==1.76.0 pytest-asyncio==1.5.0
)
# Published as source only: built here into pure-Python wheels.
SOURCE_ONLY=(antlr4-python3-runtime==4.9.3)

prepare() {
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  python3 -m pip download -q --no-deps "${PY_TAGS[@]}" -d "$WHEELS" "${PACKAGES[@]}"
  python3 -m pip wheel -q --no-deps -w "$WHEELS" "${SOURCE_ONLY[@]}" .
  python3 - "$WHEELS"/ray-*.whl <<'PY'
import base64, hashlib, sys, zipfile
path = sys.argv[1]
drop = ("ray/jars/", "ray/dashboard/client/")
with zipfile.ZipFile(path) as source:
    items = [(info, source.read(info)) for info in source.infolist() if not info.filename.startswith(drop)]
record_name = next(info.filename for info, _ in items if info.filename.endswith(".dist-info/RECORD"))
lines = []
for info, data in items:
    if info.filename == record_name:
        continue
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    lines.append(f"{info.filename},sha256={digest},{len(data)}")
lines.append(f"{record_name},,")
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
    for info, data in items:
        target.writestr(info, "\n".join(lines) + "\n" if info.filename == record_name else data)
PY
  du -sh "$WHEELS"
}

run() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
  (cd /tmp && python3 -m exgrpo_verl check)  # outside the checkout, so the installed wheel is used
  python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="" \
    tests/test_agent_loop.py tests/test_rollout_pipeline.py tests/test_aux_loss.py tests/test_e2e_gpu.py
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
