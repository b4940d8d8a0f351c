"""Which floating-point precision the ``cpu`` student computes in, decided from the CPU it runs on.

bf16 halves the bytes every matmul reads, and on CPUs with bf16 instructions (``avx512_bf16``, or AMX
tiles) oneDNN runs bf16 matmuls natively: a SmolLM2-135M training step then takes about half the time
of float32. Without those instructions bf16 is emulated and slower than float32, so ``auto`` picks
bf16 only where the CPU has them. Weights and optimizer state stay float32 either way (bf16 is the
compute dtype of verl's FSDP mixed precision); the rollout server holds its copy in the same compute
dtype, so it samples from the distribution the trainer scores.

The recipes read the choice through the ``${exgrpo_cpu_dtype:PRECISION,FORMAT}`` resolver
(:func:`resolve_dtype`); every process that resolves the trainer config has imported verl and with it
the plug-in, which registers the resolver.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

RESOLVER = "exgrpo_cpu_dtype"
PRECISIONS = ("auto", "bf16", "fp32")
# the cpu students' own top-level block (verl has no such section; the resolver reads it)
CPU_SETTINGS_KEYS = ("exgrpo_cpu.precision",)
# the spellings verl's config sections use for a dtype
FORMATS = {
    "fsdp": {"bf16": "bf16", "fp32": "fp32"},  # fsdp_config.mixed_precision, fsdp_config.model_dtype
    "torch": {"bf16": "bfloat16", "fp32": "float32"},  # rollout.dtype
}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets this CPU has (empty when it has none, or when it cannot be told)."""
    import torch

    found = []
    cpu = getattr(torch, "cpu", None)
    for flag, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported")):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                found.append(flag)
        except RuntimeError:  # a torch build without the probe's backend
            pass
    if not found:  # a torch without the probes: ask the kernel
        found = [flag for flag in BF16_CPU_FLAGS if flag in _cpuinfo_flags()]
    return found


def choose_precision(requested: str) -> tuple[str, str]:
    """(``bf16`` or ``fp32``, why) for a requested precision (``auto``, ``bf16`` or ``fp32``)."""
    requested = str(requested).strip().lower()
    if requested not in PRECISIONS:
        raise ValueError(f"exgrpo_cpu.precision must be one of {list(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "set by exgrpo_cpu.precision"
    flags = cpu_bf16_flags()
    if flags:
        return "bf16", f"auto: the CPU has {'+'.join(flags)}"
    return "fp32", "auto: the CPU has no bf16 instructions (avx512_bf16/amx_bf16)"


_announced: set[tuple[str, str]] = set()


def resolve_dtype(precision: str, fmt: str = "fsdp") -> str:
    """``${exgrpo_cpu_dtype:PRECISION,FORMAT}``: the chosen dtype spelled as ``FORMAT`` wants it."""
    if fmt not in FORMATS:
        raise ValueError(f"{RESOLVER}: unknown format {fmt!r}; known: {sorted(FORMATS)}")
    chosen, why = choose_precision(precision)
    if (chosen, why) not in _announced:  # once per process: which precision ran, and why
        _announced.add((chosen, why))
        logger.warning("exgrpo cpu precision: %s (%s)", chosen, why)
    return FORMATS[fmt][chosen]
