"""Where the installed copy keeps the files verl config points at (``python -m exgrpo_verl paths``).

The repository's top-level ``reward_fns/``, ``recipes/`` and ``data_preprocess/`` install inside
the package, so they exist in a wheel install too; this prints their file-system paths for
configs that need a file rather than a ``pkg://`` module path. The same names work inside a
config as ``${exgrpo_path:NAME}`` (an OmegaConf resolver the plug-in registers), which is how
the recipes name verl's agent-loop config file wherever the package is installed.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path


def package_dir(subpackage: str) -> Path:
    """File-system directory of ``exgrpo_verl.<subpackage>`` in the installed (or editable) copy."""
    return Path(str(resources.files(f"exgrpo_verl.{subpackage}")))


def installed_paths() -> dict[str, Path]:
    return {
        "reward_file": package_dir("reward_fns") / "exgrpo_reward.py",
        "recipes_dir": package_dir("recipes"),
        "agent_loops": package_dir("recipes") / "agent_loops.yaml",
        "data_preprocess_dir": package_dir("data_preprocess"),
    }


def installed_path(name: str) -> str:
    """One of :func:`installed_paths` as a string (the ``${exgrpo_path:NAME}`` config resolver)."""
    paths = installed_paths()
    if name not in paths:
        raise ValueError(f"unknown exgrpo_path {name!r}; known: {sorted(paths)}")
    return str(paths[name])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print the installed paths of the reward file, recipes and data scripts."
    parser.add_argument("name", nargs="?", choices=sorted(installed_paths()), help="print only this path")


def run(args: argparse.Namespace) -> int:
    paths = installed_paths()
    if args.name:
        print(paths[args.name])
        return 0
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
