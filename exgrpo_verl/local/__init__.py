"""Running verl's real trainer without vLLM and without a GPU: the ``hf`` rollout backend and the
``cpu`` device platform, registered into verl's registries by :func:`register` (the plug-in calls it
when verl is imported, before anything asks verl for its platform)."""

from __future__ import annotations

# Nothing here imports verl at module level: verl imports the plug-in, which imports this package,
# while ``import verl`` may still be running.

# the name of the device platform (VERL_PLATFORM=cpu)
PLATFORM_NAME = "cpu"
# actor_rollout_ref.rollout.name of the transformers-backed rollout
BACKEND_NAME = "hf"
ADAPTER_PATH = "exgrpo_verl.local.hf_rollout.HFServerAdapter"


def _load_hf_replica():
    from exgrpo_verl.local.hf_rollout import HFRolloutReplica

    return HFRolloutReplica


def _register_cpu_engines() -> None:
    """verl registers its FSDP engines for cuda and npu; the same classes train on the CPU."""
    import warnings

    with warnings.catch_warnings():  # verl's notes on optional engines (megatron, veomni, ...) it lacks here
        warnings.filterwarnings("ignore", message=".*engine is not available.*", category=UserWarning)
        from verl.workers.engine import EngineRegistry, FSDPEngineWithLMHead
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithValueHead

    for model_type, engine in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        try:
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=PLATFORM_NAME)(engine)
        except AssertionError:  # already registered (a verl that supports the CPU itself)
            pass


def register() -> None:
    from verl.plugin.platform import PlatformRegistry, get_platform

    from exgrpo_verl.local.cpu_platform import PlatformCPU

    # first: the modules imported below may ask verl for its platform, which fixes it for the process
    PlatformRegistry.register(PLATFORM_NAME)(PlatformCPU)

    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from exgrpo_verl.local import verl_shims

    RolloutReplicaRegistry.register(BACKEND_NAME, _load_hf_replica)
    verl_shims.register_rollout_adapter(BACKEND_NAME, ADAPTER_PATH)
    if get_platform().device_name == PLATFORM_NAME:
        verl_shims.use_cpu_process_groups()
        _register_cpu_engines()
        verl_shims.use_unpinned_offload()
