"""The plug-in as verl sees it: entry point, self-check command, installed paths."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

from exgrpo_verl.paths import installed_paths
from exgrpo_verl.plugin import ENTRY_POINT_GROUP, ENTRY_POINT_NAME, REGISTRATIONS


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exgrpo_verl", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_entry_point_is_declared():
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get(ENTRY_POINT_NAME) == "exgrpo_verl.plugin"


def test_importing_verl_loads_the_plugin():
    code = "import sys, verl; print('exgrpo_verl.plugin' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True", out.stderr


def test_check_command_lists_every_registration():
    result = _run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ ok ] entry point" in result.stdout
    for registration in REGISTRATIONS:
        assert f"[ ok ] {registration.kind}: {registration.name}" in result.stdout
    assert "reward.custom_reward_function.path=pkg://exgrpo_verl.reward_fns.exgrpo_reward" in result.stdout


def test_check_command_fails_when_verl_skips_the_plugin():
    result = _run("check", env={"VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert result.returncode == 1
    assert "[FAIL] entry point" in result.stdout


def test_paths_point_at_real_files():
    paths = installed_paths()
    assert paths["reward_file"].is_file()
    assert paths["recipes_dir"].is_dir()
    assert paths["agent_loops"].is_file() and paths["agent_loops"].parent == paths["recipes_dir"]
    result = _run("paths", "reward_file")
    assert result.returncode == 0 and result.stdout.strip() == str(paths["reward_file"])


def test_unknown_command_is_rejected():
    result = _run("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_every_package_is_in_the_wheel():
    """pyproject lists the packages explicitly; one left out is missing from a wheel install (and the
    editable install used for development would not show it)."""
    import pytest

    from tests.conftest import REPO_ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "exgrpo_verl").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
