"""Where the installed copy keeps the files verl config points at (``python -m exgrpo_verl paths``).

The repository's top-level ``reward_fns/``, ``recipes/`` and ``data_preprocess/`` install inside
the package, so they exist in a wheel install too; this prints their file-system paths for
configs that need a file rather than a ``pkg://`` module path.
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
        "data_preprocess_dir": package_dir("data_preprocess"),
    }


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
