"""verl plug-in entry point (``verl.plugins`` group), imported by ``import verl`` in every process.

verl swallows plug-in import errors at DEBUG level, so this module also knows how to verify
itself: ``python -m exgrpo_verl check`` lists every registration and fails loudly on a missing one.
Registering means importing the modules whose decorators register into verl's registries.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENTRY_POINT_GROUP = "verl.plugins"
ENTRY_POINT_NAME = "exgrpo_verl"
REWARD_PATH = "pkg://exgrpo_verl.reward_fns.exgrpo_reward"
REWARD_NAME = "compute_score"
MANAGER_CLASS = "exgrpo_verl.rollout.ExGRPOAgentLoopManager"
SAMPLER_PATH = "pkg://exgrpo_verl.rollout.v1_metrics"
SAMPLER_NAME = "exgrpo_replay_buffer"
PATH_RESOLVER = "exgrpo_path"
REQUIRED_RESOLVER = "exgrpo_required"
AGENT_LOOP_CONFIG = f"${{{PATH_RESOLVER}:agent_loops}}"

# Modules imported for their registration side effects: the probe-dialogue agent loop registers
# itself in verl's agent-loop registry, which every AgentLoopWorker process consults by agent_name.
# The trainer module registers the exgrpo_sync trainer mode in verl's trainer registry, which
# main_ppo's TaskRunner consults by trainer.v1.trainer_mode.
REGISTERING_MODULES: tuple[str, ...] = ("exgrpo_verl.rollout.agent_loop", "exgrpo_verl.training.trainer")

# The CPU platform and the hf rollout go first: the modules below ask verl for its platform, which
# verl then fixes for the whole process.
from exgrpo_verl.local import register as _register_local_backends  # noqa: E402

_register_local_backends()

for _module in REGISTERING_MODULES:
    importlib.import_module(_module)


class MissingRecipeValueError(ValueError):
    """A recipe value the user must supply (model path, data files) was not given."""


def _required_value(what: str, *, _node_: Any) -> None:
    """``${exgrpo_required:WHAT}``: a recipe value with no sensible default.

    A ``???`` in a recipe file does not replace a value verl's base config already has (OmegaConf
    keeps the base value), so a recipe marks its mandatory keys with this resolver instead; any
    override replaces it, and resolving it unset fails with the key's name.
    """
    key = _node_._get_full_key(None)
    raise MissingRecipeValueError(f"{key} is not set: pass {key}=<{what}>")


def _register_config_resolvers() -> None:
    """``${exgrpo_path:NAME}`` (an installed file, as ``python -m exgrpo_verl paths NAME`` prints it),
    ``${exgrpo_required:WHAT}`` and ``${exgrpo_cpu_dtype:PRECISION,FORMAT}`` (the cpu student's
    compute dtype, from the CPU's features) for the recipes.

    verl resolves the agent-loop config path only as absolute, cwd- or verl-relative, so a recipe
    names the installed file through a resolver. Every process that resolves the trainer config
    (the driver, the TaskRunner) has imported verl, and with it this module.
    """
    from omegaconf import OmegaConf

    from exgrpo_verl.local.cpu_precision import RESOLVER as CPU_DTYPE_RESOLVER
    from exgrpo_verl.local.cpu_precision import resolve_dtype
    from exgrpo_verl.paths import installed_path

    OmegaConf.register_new_resolver(PATH_RESOLVER, installed_path, replace=True)
    OmegaConf.register_new_resolver(REQUIRED_RESOLVER, _required_value, replace=True)
    OmegaConf.register_new_resolver(CPU_DTYPE_RESOLVER, resolve_dtype, replace=True)


_register_config_resolvers()


@dataclass(frozen=True)
class Registration:
    """One thing the plug-in provides to verl, how to name it in config, and how to prove it works."""

    kind: str
    name: str
    config: str
    probe: Callable[[], None]


def _probe_reward() -> None:
    from verl.utils.import_utils import load_extern_object

    compute_score = load_extern_object(REWARD_PATH, REWARD_NAME)
    result = compute_score("gsm8k", "so the total is \\boxed{1,000}", "1000")
    if result.get("score") != 1.0:
        raise RuntimeError(f"reward function mis-scored a known-correct answer: {result}")


def _probe_agent_loop() -> None:
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    from exgrpo_verl.schema import PROBE_AGENT_NAME

    entry = _agent_loop_registry.get(PROBE_AGENT_NAME)
    if entry is None:
        raise RuntimeError(f"agent loop {PROBE_AGENT_NAME!r} is not in verl's registry")
    if entry["_target_"] != "exgrpo_verl.rollout.agent_loop.ProbeDialogueAgentLoop":
        raise RuntimeError(f"agent loop {PROBE_AGENT_NAME!r} points to {entry['_target_']!r}")


def _probe_trainer_mode() -> None:
    from verl.trainer.ppo.v1.trainer_base import get_trainer_cls

    from exgrpo_verl.training.trainer import TRAINER_MODE, ExGRPOTrainerSync

    if get_trainer_cls(TRAINER_MODE) is not ExGRPOTrainerSync:
        raise RuntimeError(f"trainer mode {TRAINER_MODE!r} is not ExGRPOTrainerSync")


def _probe_manager() -> None:
    from verl.utils.import_utils import load_class_from_fqn

    if not callable(getattr(load_class_from_fqn(MANAGER_CLASS, "AgentLoopManager"), "create", None)):
        raise RuntimeError(f"{MANAGER_CLASS} has no create()")


def _probe_agent_loop_config() -> None:
    from omegaconf import OmegaConf
    from verl.utils.import_utils import resolve_config_path

    from exgrpo_verl.schema import PROBE_AGENT_NAME

    path = resolve_config_path(OmegaConf.create({"path": AGENT_LOOP_CONFIG}).path)  # as verl's workers do
    entries = {entry.name: entry for entry in OmegaConf.load(path)}
    if PROBE_AGENT_NAME not in entries:
        raise RuntimeError(f"{path} does not list the agent loop {PROBE_AGENT_NAME!r}")
    target = entries[PROBE_AGENT_NAME]["_target_"]
    if target != "exgrpo_verl.rollout.agent_loop.ProbeDialogueAgentLoop":
        raise RuntimeError(f"{path}: {PROBE_AGENT_NAME!r} points to {target!r}")


def _probe_required_resolver() -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.create({"data": {"train_files": f"${{{REQUIRED_RESOLVER}:the RL parquet}}"}})
    try:
        OmegaConf.resolve(config)
    except Exception as exc:  # OmegaConf wraps the resolver's error
        if "data.train_files is not set" not in str(exc):
            raise RuntimeError(f"unexpected error from {REQUIRED_RESOLVER}: {exc}") from exc
    else:
        raise RuntimeError(f"${{{REQUIRED_RESOLVER}:...}} resolved instead of failing")


def _probe_sampler() -> None:
    from verl.utils.import_utils import load_extern_object

    if not callable(load_extern_object(SAMPLER_PATH, SAMPLER_NAME)):
        raise RuntimeError(f"{SAMPLER_PATH}:{SAMPLER_NAME} is not callable")


def _probe_hf_rollout() -> None:
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    from exgrpo_verl.local import BACKEND_NAME
    from exgrpo_verl.local.hf_rollout import HFRolloutReplica, HFServerAdapter

    if get_rollout_replica_class(BACKEND_NAME) is not HFRolloutReplica:
        raise RuntimeError(f"verl's replica registry does not give HFRolloutReplica for {BACKEND_NAME!r}")
    if get_rollout_class(BACKEND_NAME, "async") is not HFServerAdapter:
        raise RuntimeError(f"verl's rollout registry does not give HFServerAdapter for {BACKEND_NAME!r}")


def _probe_cpu_platform() -> None:
    from verl.plugin.platform import PlatformRegistry

    from exgrpo_verl.local import PLATFORM_NAME
    from exgrpo_verl.local.cpu_platform import PlatformCPU
    from exgrpo_verl.local.verl_shims import check

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        raise RuntimeError(f"platform {PLATFORM_NAME!r} is not registered with verl")
    problems = check()
    if problems:
        raise RuntimeError("; ".join(problems))


REGISTRATIONS: tuple[Registration, ...] = (
    Registration(
        "agent loop",
        "exgrpo_probe_dialogue",
        "rows with agent_name=exgrpo_probe_dialogue (written by the EI pipeline)",
        _probe_agent_loop,
    ),
    Registration(
        "trainer mode",
        "exgrpo_sync",
        "trainer.v1.trainer_mode=exgrpo_sync (installs the L_SFT-aux actor loss; needs trainer.use_v1=true)",
        _probe_trainer_mode,
    ),
    Registration(
        "agent loop config file",
        "agent_loops.yaml",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}",
        _probe_agent_loop_config,
    ),
    Registration(
        "config resolver",
        REQUIRED_RESOLVER,
        "recipes mark values you must pass (model path, data files) with it",
        _probe_required_resolver,
    ),
    Registration(
        "agent loop manager",
        "ExGRPOAgentLoopManager",
        f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={MANAGER_CLASS}",
        _probe_manager,
    ),
    Registration(
        "v1 metrics sampler",
        SAMPLER_NAME,
        f"trainer.v1.sampler.custom_sampler.path={SAMPLER_PATH} trainer.v1.sampler.custom_sampler.name={SAMPLER_NAME}",
        _probe_sampler,
    ),
    Registration(
        "rollout backend",
        "hf",
        "actor_rollout_ref.rollout.name=hf (transformers generate; no vLLM/SGLang needed)",
        _probe_hf_rollout,
    ),
    Registration(
        "device platform",
        "cpu",
        "chosen when no accelerator is present, or VERL_PLATFORM=cpu (with verl's private names it relies on)",
        _probe_cpu_platform,
    ),
    Registration(
        "reward function",
        REWARD_NAME,
        f"reward.custom_reward_function.path={REWARD_PATH} reward.custom_reward_function.name={REWARD_NAME}",
        _probe_reward,
    ),
)


def _entry_point_problem() -> str | None:
    """Why a fresh ``import verl`` (as in every Ray worker) would not load this plug-in, or None."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ENTRY_POINT_NAME]
    if not found:
        return f"no '{ENTRY_POINT_NAME}' entry point in group '{ENTRY_POINT_GROUP}': is the package installed?"
    if found[0].value != __name__:
        return f"entry point '{ENTRY_POINT_NAME}' points to {found[0].value!r}, expected {__name__!r}"
    # This process imported the plug-in itself, so ask a fresh interpreter what verl loads.
    probe = f"import sys, verl; sys.exit(0 if {__name__!r} in sys.modules else 3)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600)
    if result.returncode == 3:
        return "`import verl` did not load the plug-in (is VERL_USE_EXTERNAL_PLUGINS excluding it?)"
    if result.returncode != 0:
        return f"`import verl` failed: {result.stderr.strip().splitlines()[-1:]}"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Verify that verl loads the plug-in and that every registration works."


def run(args: argparse.Namespace) -> int:
    import verl

    print(f"verl {verl.__version__}; plug-in module {__name__}")
    failures = 0
    problem = _entry_point_problem()
    print(f"  [{'FAIL' if problem else ' ok '}] entry point {ENTRY_POINT_GROUP}:{ENTRY_POINT_NAME}")
    if problem:
        print(f"         {problem}")
        failures += 1
    for registration in REGISTRATIONS:
        try:
            registration.probe()
        except Exception as exc:  # report every failure, not just the first
            failures += 1
            print(f"  [FAIL] {registration.kind}: {registration.name}\n         {type(exc).__name__}: {exc}")
        else:
            print(f"  [ ok ] {registration.kind}: {registration.name}\n         {registration.config}")
    print("all registrations present" if not failures else f"{failures} problem(s)")
    return 1 if failures else 0
