"""Load a dataset (hub or local files) and report malformed rows.

``python data_preprocess/check_data.py --help`` or ``python -m exgrpo_verl ei-check-data``; the work is done by
exgrpo_verl.probes.cli and the package behind it.
"""

from __future__ import annotations

import argparse
import sys

from exgrpo_verl.probes import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_check_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_check(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_data")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
