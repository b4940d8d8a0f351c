"""``python -m exgrpo_verl preflight -- COMMAND...``: checks a run script's verl command before it starts.

verl's trainers drop the last incomplete batch, so training data with fewer rows than
``data.train_batch_size`` gives zero steps per epoch: the SFT trainer stops with a bare
``ZeroDivisionError`` after loading the model, the RL trainer with an empty data loader. The run
scripts call this on the exact command they are about to run; it composes that command's config
with Hydra (the same recipe and overrides, verl's configs found without importing verl, so it costs
under a second), counts the rows of the local parquet files, and stops with one line naming the
files, their rows and the batch size.

Only that definite mistake stops a run. A command this cannot compose or a value it cannot resolve
(a remote file, an interpolation that needs the plug-in's resolvers) is left to verl, which reports
it with its own message.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENTRY_POINTS = {"verl.trainer.sft_trainer": "SFT data", "verl.trainer.main_ppo": "RL data"}


CONFIG_OPTIONS = {
    "--config-path": "config_path",
    "-cp": "config_path",
    "--config-name": "config_name",
    "-cn": "config_name",
}


class PreflightError(ValueError):
    """The command cannot train: what is wrong, in one line."""


@dataclass(frozen=True)
class HydraCommand:
    """The parts of a verl command line that decide its config."""

    what: str  # "SFT data" | "RL data"
    config_dir: str
    config_name: str
    overrides: list[str]


def parse_command(argv: Sequence[str]) -> HydraCommand | None:
    """Finds the entry point, ``--config-path``/``--config-name`` and the overrides after the module.

    Anything before the entry module (``env VAR=...``, a launcher and its flags) is ignored. None
    when the command runs neither verl entry point or names no recipe folder.
    """
    argv = list(argv)
    module_at = next((i for i, arg in enumerate(argv[:-1]) if arg == "-m" and argv[i + 1] in ENTRY_POINTS), None)
    if module_at is None:
        return None
    options: dict[str, str] = {}
    overrides: list[str] = []
    rest = iter(argv[module_at + 2 :])
    for arg in rest:
        name, has_value, value = arg.partition("=")
        if name in CONFIG_OPTIONS:
            options[CONFIG_OPTIONS[name]] = value if has_value else next(rest, "")
        elif not arg.startswith("-"):
            overrides.append(arg)
    if not options.get("config_path") or not options.get("config_name"):
        return None
    what = ENTRY_POINTS[argv[module_at + 1]]
    return HydraCommand(what, str(Path(options["config_path"]).resolve()), options["config_name"], overrides)


def compose(command: HydraCommand):
    """The command's config as verl would see it, composed without importing verl (seconds saved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    spec = importlib.util.find_spec("verl")
    search = [] if spec is None or not spec.submodule_search_locations else list(spec.submodule_search_locations)
    overrides = [f"hydra.searchpath=[file://{Path(search[0]) / 'trainer' / 'config'}]"] if search else []
    with initialize_config_dir(config_dir=command.config_dir, version_base=None):
        return hydra_compose(config_name=command.config_name, overrides=[*overrides, *command.overrides])


def parquet_rows(path: str) -> int | None:
    """Rows in a local parquet file from its footer; None for a remote or missing file (verl's to report)."""
    import pyarrow.parquet as pq

    if "://" in path or not Path(path).is_file():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise PreflightError(f"{path}: not a readable parquet file ({error})") from error


def _rows(count: int | None) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def check_batch(what: str, files: Sequence[str], batch_size: int, max_samples: int | None = None) -> None:
    """Stops when the files hold fewer rows than one batch (verl would train zero steps)."""
    counts = {path: parquet_rows(path) for path in files}
    if not counts or any(rows is None for rows in counts.values()):
        return
    rows = sum(rows for rows in counts.values() if rows is not None)
    usable = min(rows, max_samples) if max_samples is not None and max_samples > 0 else rows
    if usable >= batch_size:
        return
    if len(counts) == 1:
        where, total = next(iter(counts)), _rows(rows)
    else:
        where = "(" + ", ".join(f"{path}: {_rows(n)}" for path, n in counts.items()) + ")"
        total = f"{_rows(rows)} in all"
    capped = f", {usable} after data.train_max_samples={max_samples}" if usable < rows else ""
    fix = f"add rows or pass data.train_batch_size={usable}" if usable > 0 else "add rows"
    raise PreflightError(
        f"{what} {where} has {total}{capped}, fewer than one batch (data.train_batch_size={batch_size}); "
        f"verl drops an incomplete batch, so nothing would train: {fix}"
    )


def preflight(argv: Sequence[str]) -> str | None:
    """Checks the command; None when it may run, else why it was not checked (a note, not an error)."""
    from omegaconf import OmegaConf

    command = parse_command(argv)
    if command is None:
        return "not a verl trainer command with --config-path/--config-name"
    try:
        config = compose(command)
    except Exception as error:  # hydra's own errors are many; verl prints the same one itself
        return f"could not compose the config ({type(error).__name__}: {str(error).splitlines()[0]})"

    def select(key: str):
        return OmegaConf.select(config, key, throw_on_resolution_failure=False)

    files, batch_size = select("data.train_files"), select("data.train_batch_size")
    if files is None or not isinstance(batch_size, int):
        return "data.train_files or data.train_batch_size is not a plain value"
    files = [files] if isinstance(files, str) else [str(path) for path in files]
    max_samples = select("data.train_max_samples")
    check_batch(command.what, files, batch_size, max_samples if isinstance(max_samples, int) else None)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Check a verl training command before it starts (training data holds at least one batch)."
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        note = preflight(command)
    except PreflightError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if note:
        print(f"exgrpo preflight: not checked: {note}", file=sys.stderr)
    return 0
