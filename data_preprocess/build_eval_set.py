"""Write single-turn val/test parquet for a dataset split.

``python data_preprocess/build_eval_set.py --help`` or ``python -m exgrpo_verl ei-eval-set``; the work is done by
exgrpo_verl.probes.cli and the package behind it.
"""

from __future__ import annotations

import argparse
import sys

from exgrpo_verl.probes import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_eval_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_eval(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_eval_set")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
