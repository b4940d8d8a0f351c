"""The cpu student's compute precision: bf16 only on CPUs with bf16 instructions, as the recipes read it."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

import exgrpo_verl.plugin  # noqa: F401  (registers the resolver, as `import verl` does)
from exgrpo_verl.local import cpu_precision
from exgrpo_verl.local.cpu_precision import choose_precision, cpu_bf16_flags, resolve_dtype


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(cpu_precision, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert choose_precision("auto") == ("bf16", "auto: the CPU has avx512_bf16")
    monkeypatch.setattr(cpu_precision, "cpu_bf16_flags", lambda: [])
    chosen, why = choose_precision("auto")
    assert chosen == "fp32" and "no bf16 instructions" in why


def test_an_explicit_choice_wins_over_the_cpu(monkeypatch):
    monkeypatch.setattr(cpu_precision, "cpu_bf16_flags", lambda: [])
    assert choose_precision("bf16")[0] == "bf16"
    assert choose_precision(" FP32 ")[0] == "fp32"


def test_an_unknown_precision_names_the_key():
    with pytest.raises(ValueError, match=r"exgrpo_cpu.precision must be one of \['auto', 'bf16', 'fp32'\]"):
        choose_precision("fp16")


def test_flags_come_from_torch_or_the_kernel(monkeypatch, tmp_path):
    import torch

    flags = cpu_bf16_flags()
    assert set(flags) <= {"avx512_bf16", "amx_bf16"}
    # a torch without the probes: /proc/cpuinfo decides
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    read = cpu_precision._cpuinfo_flags
    monkeypatch.setattr(cpu_precision, "_cpuinfo_flags", lambda: read(cpuinfo))
    assert cpu_bf16_flags() == ["amx_bf16"]


def test_the_resolver_spells_the_dtype_for_each_section(monkeypatch, caplog):
    monkeypatch.setattr(cpu_precision, "cpu_bf16_flags", lambda: ["amx_bf16"])
    monkeypatch.setattr(cpu_precision, "_announced", set())
    config = OmegaConf.create(
        {
            "exgrpo_cpu": {"precision": "auto"},
            "fsdp": "${exgrpo_cpu_dtype:${exgrpo_cpu.precision},fsdp}",
            "rollout": "${exgrpo_cpu_dtype:${exgrpo_cpu.precision},torch}",
        }
    )
    with caplog.at_level(logging.WARNING, logger=cpu_precision.__name__):
        assert (config.fsdp, config.rollout) == ("bf16", "bfloat16")
    assert "exgrpo cpu precision: bf16 (auto: the CPU has amx_bf16)" in caplog.text
    config.exgrpo_cpu.precision = "fp32"
    assert (config.fsdp, config.rollout) == ("fp32", "float32")
    with pytest.raises(ValueError, match="unknown format 'jax'"):
        resolve_dtype("auto", "jax")
