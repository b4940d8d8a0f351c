"""Every place where running without vLLM or a GPU touches a private name of verl, in one module.

verl 0.9 has public registries for rollout replicas, device platforms and training engines, but three
things still need private names:

- ``verl.workers.rollout.base._ROLLOUT_REGISTRY``: the trainer worker looks the rollout adapter up in
  this dict (``get_rollout_class`` asserts the key), and nothing public adds to it.
- ``verl.utils.distributed.initialize_global_process_group[_ray]``: they build the backend string
  ``"cpu:gloo,<device>:<backend>"``, which torch rejects when the device is the CPU
  (``cpu:gloo,cpu:gloo``: duplicate device type). On the CPU platform they are replaced by versions
  that ask for ``cpu:gloo`` alone.
- ``CPUOffloadPolicy`` as verl's FSDP engine module imports it: the reference model (forward only) is
  always built with ``CPUOffloadPolicy(pin_memory=True)``, and pinning host memory needs a GPU. On
  the CPU platform that module gets a policy that never pins (the parameters already live in host
  memory, so nothing else changes).

:func:`check` verifies that each name still has the shape this module relies on; the plug-in's
``check`` command and a test call it, so a verl upgrade that moves one fails loudly instead of
training with a silent fallback.
"""

from __future__ import annotations

import inspect
import os
import sys
from datetime import timedelta
from typing import Any

CPU_BACKEND = "cpu:gloo"


class VerlShimError(RuntimeError):
    """A private verl name this plug-in relies on has changed."""


def _rollout_registry() -> dict:
    from verl.workers.rollout import base

    registry = getattr(base, "_ROLLOUT_REGISTRY", None)
    if not isinstance(registry, dict) or ("vllm", "async") not in registry:
        raise VerlShimError(
            "verl.workers.rollout.base._ROLLOUT_REGISTRY is gone or no longer maps (name, mode) to a class path"
        )
    return registry


def register_rollout_adapter(name: str, adapter_path: str) -> None:
    """Make ``get_rollout_class(name, "async")`` return the class at ``adapter_path``."""
    _rollout_registry()[(name, "async")] = adapter_path


def _initialize_global_process_group_cpu(timeout_second: int = 36000) -> tuple[int, int, int]:
    """verl's torchrun entry (SFT trainer) on the CPU: gloo only, no device to select."""
    import torch.distributed

    torch.distributed.init_process_group(
        backend=CPU_BACKEND,
        timeout=timedelta(seconds=timeout_second),
        init_method=os.environ.get("DIST_INIT_METHOD", None),
    )
    return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def _process_group_functions() -> tuple[Any, Any]:
    from verl.utils import distributed

    ray_init = getattr(distributed, "initialize_global_process_group_ray", None)
    torchrun_init = getattr(distributed, "initialize_global_process_group", None)
    if ray_init is None or "backend" not in inspect.signature(ray_init).parameters:
        raise VerlShimError("verl.utils.distributed.initialize_global_process_group_ray(backend=...) is gone")
    if torchrun_init is None or list(inspect.signature(torchrun_init).parameters) != ["timeout_second"]:
        raise VerlShimError("verl.utils.distributed.initialize_global_process_group(timeout_second) has changed")
    return ray_init, torchrun_init


def _rebind(original: Any, replacement: Any) -> None:
    """Point every loaded verl module's reference to ``original`` (``from … import`` copies) at ``replacement``."""
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not namespace or not (name == "verl" or name.startswith("verl.")):
            continue
        for key, value in list(namespace.items()):
            if value is original:
                setattr(module, key, replacement)


def use_cpu_process_groups() -> None:
    """Make verl's process-group set-up ask torch for ``cpu:gloo`` (the CPU platform only)."""
    ray_init, torchrun_init = _process_group_functions()
    if getattr(ray_init, "_exgrpo_cpu", False):
        return

    def initialize_global_process_group_ray(timeout_second: int | None = None, backend: str | None = None) -> None:
        return ray_init(timeout_second=timeout_second, backend=backend or CPU_BACKEND)

    initialize_global_process_group_ray._exgrpo_cpu = True  # type: ignore[attr-defined]
    _initialize_global_process_group_cpu._exgrpo_cpu = True  # type: ignore[attr-defined]
    _rebind(ray_init, initialize_global_process_group_ray)
    _rebind(torchrun_init, _initialize_global_process_group_cpu)


def _fsdp_engine_offload_policy() -> type:
    from verl.workers.engine.fsdp import transformer_impl

    policy = getattr(transformer_impl, "CPUOffloadPolicy", None)
    if not isinstance(policy, type) or "pin_memory" not in inspect.signature(policy).parameters:
        raise VerlShimError("verl.workers.engine.fsdp.transformer_impl no longer uses CPUOffloadPolicy(pin_memory=...)")
    return policy


def use_unpinned_offload() -> None:
    """Make verl's FSDP engine build offload policies that do not pin host memory (the CPU platform only)."""
    policy = _fsdp_engine_offload_policy()
    if getattr(policy, "_exgrpo_cpu", False):
        return

    class UnpinnedCPUOffloadPolicy(policy):  # type: ignore[misc, valid-type]
        _exgrpo_cpu = True

        def __init__(self, pin_memory: bool = False, **kwargs: Any) -> None:
            super().__init__(pin_memory=False, **kwargs)

    _rebind(policy, UnpinnedCPUOffloadPolicy)


def check() -> list[str]:
    """Problems with the private names above (empty when every shim still fits this verl)."""
    problems = []
    for probe in (_rollout_registry, _process_group_functions, _fsdp_engine_offload_policy):
        try:
            probe()
        except VerlShimError as exc:
            problems.append(str(exc))
    return problems
