"""Run a hydra entry point (``python -m MODULE ARGS``) several times in one interpreter.

Composing a recipe through verl's entry point costs an interpreter start and verl's imports
(torch, tensordict, Ray): seconds per compose. Tests that compose many recipes start this module
once per entry point instead::

    python -m exgrpo_verl.testing.hydra_cli verl.trainer.main_ppo < runs.json > results.json

``runs.json`` is a list of argument lists (what follows ``python -m MODULE``); each is run by
calling the module's ``main`` (the function ``python -m`` would run) with ``sys.argv`` set to it, and
the result list holds ``{"returncode", "stdout", "stderr"}`` per run, as a subprocess would give.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Any


def run_main(module_name: str, args: list[str]) -> dict[str, Any]:
    """One ``python -m module_name *args`` run, in this interpreter."""
    from hydra.core.global_hydra import GlobalHydra

    module = importlib.import_module(module_name)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [module.__file__, *args]
    GlobalHydra.instance().clear()
    returncode = 0
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            module.main()
    except SystemExit as exit_:  # hydra reports a bad config/override this way
        code = exit_.code
        returncode = code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # noqa: BLE001  (reported like an uncaught exception would be)
        stderr.write(f"{type(exc).__name__}: {exc}\n")
        returncode = 1
    finally:
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
    return {"returncode": returncode, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def main() -> int:
    module_name = sys.argv[1]
    runs = json.load(sys.stdin)
    results = [run_main(module_name, list(args)) for args in runs]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
