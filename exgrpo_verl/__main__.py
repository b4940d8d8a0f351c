"""``python -m exgrpo_verl <command>``: one entry point for the plug-in's command-line tools."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module with add_arguments/run, one-line help); imported only when chosen.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("exgrpo_verl.plugin", "verify verl loads the plug-in and every registration works"),
    "paths": ("exgrpo_verl.paths", "print installed paths of the reward file, recipes and data scripts"),
    "preflight": ("exgrpo_verl.preflight", "check a run script's verl command before it starts (data >= one batch)"),
    "preview": ("exgrpo_verl.rollout.preview", "run the probe-dialogue rollout on CPU for a few rows and show rewards"),
    "ei-build": ("exgrpo_verl.data_preprocess.build_ei", "stage 1: build EI probes, filter, write RL and SFT parquet"),
    "ei-eval-set": ("exgrpo_verl.data_preprocess.build_eval_set", "write single-turn val/test parquet"),
    "ei-check-data": ("exgrpo_verl.data_preprocess.check_data", "load a dataset and report malformed rows"),
    "eval": ("exgrpo_verl.eval.cli", "single-turn accuracy of a model on the twelve datasets (resumable)"),
    "report": ("exgrpo_verl.eval.report", "markdown table and bar chart of eval results"),
    "ablation": ("exgrpo_verl.ablation.cli", "the paper's ablation (Table 3) against plain GRPO: train, eval, report"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exgrpo_verl")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / the error and exits
    module = importlib.import_module(COMMANDS[argv[0]][0])
    command_parser = argparse.ArgumentParser(prog=f"python -m exgrpo_verl {argv[0]}")
    module.add_arguments(command_parser)
    return module.run(command_parser.parse_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
