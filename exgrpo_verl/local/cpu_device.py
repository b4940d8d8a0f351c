"""The ``torch.<device>``-style module verl gets from ``get_torch_device()`` on the CPU platform.

verl calls CUDA's module API on whatever its platform returns (``empty_cache``, ``get_rng_state``,
``mem_get_info``, ``memory_allocated``, ...); ``torch.cpu`` has only part of it. This module answers
the rest with their CPU meaning (RNG state is torch's global CPU generator; "allocated" memory is this
process's resident set, "free/total" the machine's) and delegates everything else to ``torch.cpu``.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import torch


def empty_cache() -> None:
    """The CPU allocator keeps no cache to return."""


def ipc_collect() -> None:
    """No inter-process device memory on the CPU."""


def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
    """No device memory pool to cap on the CPU."""


def get_device_name(device: Any = None) -> str:
    return "cpu"


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


manual_seed_all = manual_seed


def get_rng_state(device: Any = None) -> torch.Tensor:
    return torch.get_rng_state()


def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
    torch.set_rng_state(state)


def _physical_bytes() -> tuple[int, int]:
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of system memory, as CUDA reports them for a GPU."""
    return _physical_bytes()


def _peak_resident_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_allocated(device: Any = None) -> int:
    """Resident set size of this process."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_resident_bytes()


def max_memory_allocated(device: Any = None) -> int:
    """Peak resident set size of this process (the kernel's peak can trail the current size a little)."""
    return max(_peak_resident_bytes(), memory_allocated())


memory_reserved = memory_allocated
max_memory_reserved = max_memory_allocated


def reset_peak_memory_stats(device: Any = None) -> None:
    """Peaks are not tracked on the CPU."""


def __getattr__(name: str) -> Any:
    return getattr(torch.cpu, name)
