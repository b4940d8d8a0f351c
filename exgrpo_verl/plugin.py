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

ENTRY_POINT_GROUP = "verl.plugins"
ENTRY_POINT_NAME = "exgrpo_verl"
REWARD_PATH = "pkg://exgrpo_verl.reward_fns.exgrpo_reward"
REWARD_NAME = "compute_score"

# Modules imported for their registration side effects (agent loops, managers, ...).
REGISTERING_MODULES: tuple[str, ...] = ()

for _module in REGISTERING_MODULES:
    importlib.import_module(_module)


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


REGISTRATIONS: tuple[Registration, ...] = (
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
