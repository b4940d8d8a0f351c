"""A verl device platform for machines without an accelerator (laptops, CI, CPU-only nodes).

verl picks its platform once per process (``VERL_PLATFORM`` or auto-detection) and, when no
accelerator answers, falls back to ``nvidia``, which then fails on the first CUDA call. This
platform makes ``device_name == "cpu"``: torch work stays on the CPU, collectives use gloo, and Ray
scheduling still counts *logical* GPUs (``ray.init(num_gpus=N)`` on the CPU recipe) because verl's
resource pools are written in GPUs.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase


class PlatformCPU(PlatformBase):
    """Everything on the CPU; one logical device per process."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        from exgrpo_verl.local import cpu_device

        return cpu_device

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Auto-detection probes platforms in registration order; verl's own come first, so this
        # one is chosen only when none of theirs answers (or with VERL_PLATFORM=cpu).
        return True

    def current_device(self) -> str:
        # verl moves tensors with .to(get_device_id()); an index would mean cuda:<index>
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for actors holding logical GPUs; reading it is harmless here.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
