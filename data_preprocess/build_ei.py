"""Stage 1: build EI probes for a dataset and write RL and SFT parquet.

``python data_preprocess/build_ei.py --help`` or ``python -m exgrpo_verl ei-build``; the work is done by
exgrpo_verl.probes.cli and the package behind it.
"""

from __future__ import annotations

import argparse
import sys

from exgrpo_verl.probes import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_build_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_build(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_ei")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
