"""The CPU device platform: chosen where no accelerator answers, the device API verl calls on it, and
the shims of private verl names it needs, which must fail loudly when a verl upgrade moves them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from exgrpo_verl.local import verl_shims


def in_fresh_python(code: str, **env: str) -> dict:
    """Run ``code`` (which prints one JSON line last) in a new interpreter, as a Ray worker would start."""
    environment = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


PLATFORM_PROBE = """
import json, torch, verl
from verl.utils.device import get_device_name, get_nccl_backend, get_device_id, get_torch_device, get_resource_name
device = get_torch_device()
device.manual_seed(3); state = device.get_rng_state(); a = torch.rand(1); device.set_rng_state(state)
free, total = device.mem_get_info()
device.empty_cache(); device.synchronize(); device.set_device(0)
print(json.dumps({
    "device": get_device_name(), "backend": get_nccl_backend(), "id": get_device_id(), "resource": get_resource_name(),
    "rng_restored": bool(torch.equal(a, torch.rand(1))), "memory": [device.memory_allocated(),
    device.max_memory_allocated(), free, total], "tensor": str(torch.zeros(1).to(get_device_id()).device),
}))
"""


@pytest.mark.skipif(
    bool(os.environ.get("CUDA_VISIBLE_DEVICES")) and __import__("torch").cuda.is_available(),
    reason="auto-detection picks the GPU here",
)
def test_chosen_without_an_accelerator_and_usable():
    seen = in_fresh_python(PLATFORM_PROBE)
    assert (seen["device"], seen["backend"], seen["id"], seen["resource"]) == ("cpu", "gloo", "cpu", "GPU")
    assert seen["tensor"] == "cpu" and seen["rng_restored"]
    allocated, peak, free, total = seen["memory"]
    assert 0 < allocated <= peak and 0 < free <= total


def test_chosen_by_name():
    assert in_fresh_python(PLATFORM_PROBE, VERL_PLATFORM="cpu")["device"] == "cpu"


PROCESS_GROUP_PROBE = """
import json, torch.distributed as dist, verl
import verl.workers.engine_workers as workers
from verl.utils.distributed import initialize_global_process_group_ray
from verl.workers.engine.fsdp import transformer_impl
from torch.distributed.fsdp import CPUOffloadPolicy
initialize_global_process_group_ray(timeout_second=None)
policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)
print(json.dumps({
    "backend": dist.get_backend(), "world": dist.get_world_size(),
    "worker_uses_shim": workers.initialize_global_process_group_ray is initialize_global_process_group_ray,
    "pinned": policy.pin_memory, "is_torch_policy": isinstance(policy, CPUOffloadPolicy),
}))
"""


def test_verls_process_group_and_offload_work_on_the_cpu():
    seen = in_fresh_python(
        PROCESS_GROUP_PROBE, VERL_PLATFORM="cpu", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517"
    )
    assert seen == {
        "backend": "cpu:gloo",
        "world": 1,
        "worker_uses_shim": True,
        "pinned": False,
        "is_torch_policy": True,
    }


def test_shims_fit_this_verl():
    assert verl_shims.check() == []


def test_a_moved_private_name_is_reported(monkeypatch):
    from verl.utils import distributed
    from verl.workers.engine.fsdp import transformer_impl
    from verl.workers.rollout import base

    monkeypatch.delattr(base, "_ROLLOUT_REGISTRY")
    monkeypatch.setattr(distributed, "initialize_global_process_group_ray", lambda timeout_second=None: None)
    monkeypatch.setattr(transformer_impl, "CPUOffloadPolicy", None)
    problems = verl_shims.check()
    assert len(problems) == 3
    assert "_ROLLOUT_REGISTRY" in problems[0]
    assert "initialize_global_process_group_ray" in problems[1]
    assert "CPUOffloadPolicy" in problems[2]
    with pytest.raises(verl_shims.VerlShimError):
        verl_shims.register_rollout_adapter("hf", "somewhere.Adapter")


def test_check_command_fails_on_a_moved_private_name():
    code = (
        "import sys, verl\n"
        "from verl.workers.rollout import base\n"
        "del base._ROLLOUT_REGISTRY\n"
        "from exgrpo_verl.plugin import run\n"
        "sys.exit(run(None))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "[FAIL] device platform: cpu" in result.stdout and "_ROLLOUT_REGISTRY" in result.stdout
