"""The documentation: the mkdocs site builds with --strict, every relative link in README.md and docs/
points at a file, and the configuration reference (docs/configuration.md) lists every key the recipes
set under `exgrpo:` and `exgrpo_cpu:` with the recipes' values."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exgrpo_verl.rollout.settings import ExGRPOSettings
from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
RECIPES = REPO_ROOT / "recipes"
CONFIG_PAGE = DOCS / "configuration.md"
README_LIMIT = 15_000  # bytes: the README is the front page; the rest lives in docs/


def require_mkdocs() -> None:
    """mkdocs and the Material theme come with the `test` extra; CI must not skip the build."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip('mkdocs / mkdocs-material not installed: python -m pip install -e ".[test]"')


def test_mkdocs_build_strict(tmp_path):
    """A broken internal link or anchor, or a page left out of the navigation, is a warning in
    mkdocs.yml's `validation:`, which --strict turns into a failed build."""
    require_mkdocs()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


# --- relative links ---------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)


def markdown_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted(DOCS.glob("**/*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(INLINE_CODE.sub("", line))
    return "\n".join(kept)


def relative_links(text: str) -> list[str]:
    body = prose(text)
    targets = LINK.findall(body) + REFERENCE.findall(body)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def test_link_scanner_sees_links_and_skips_code():
    text = "[a](docs/a.md#x) [b](https://x.org) `[c](no.md)`\n```\n[d](no.md)\n```\n[e]: ../e.md\n[f](#top)"
    assert relative_links(text) == ["docs/a.md#x", "../e.md"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_point_at_existing_files(path):
    missing = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file = target.split("#", 1)[0].split("?", 1)[0]
        if file and not (path.parent / file).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(REPO_ROOT)} links to missing files: {missing}"


# --- README -----------------------------------------------------------------------------------------


def test_readme_is_short_and_keeps_the_set_up_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= README_LIMIT, "README.md grew past 15,000 bytes: move text into docs/"
    set_up = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert 'python -m pip install -e ".[test]" && python -m pytest -q' in set_up
    assert ".ci/run" in set_up and "need not be activated" in set_up
    # .ci/run runs the README's test command through the environment's interpreter
    assert '"$py" -m pytest -q\n' in (REPO_ROOT / ".ci" / "run").read_text()


# --- the configuration reference --------------------------------------------------------------------


def table_after(heading: str, page: Path = CONFIG_PAGE) -> list[dict[str, str]]:
    """The first markdown table after the line `heading`, as one dict per row (header -> cell)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"{page.name} has no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append(cells)
        elif rows:
            break
    assert len(rows) > 2, f"no table under {heading!r} in {page.name}"
    header, rows = rows[0], rows[2:]
    return [dict(zip(header, row, strict=True)) for row in rows]


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one code span, got {cell!r}"
    return match.group(1)


def value(cell: str):
    """A table cell such as `0.5`, `null` or `fixed`, read as YAML reads it."""
    return yaml.safe_load(code(cell))


def typed(x):
    return (type(x).__name__, x)


def recipe_blocks(key: str) -> dict[str, dict]:
    """recipe file (relative to recipes/) -> its top-level `key:` mapping, for every recipe that has one."""
    blocks = {}
    for file in sorted([*RECIPES.glob("*.yaml"), *RECIPES.glob("*/*.yaml")]):
        document = yaml.safe_load(file.read_text()) or {}
        if isinstance(document, dict) and key in document:
            assert isinstance(document[key], dict), f"{file}: `{key}:` is not a mapping"
            blocks[file.relative_to(RECIPES).as_posix()] = document[key]
    return blocks


def reference(heading: str) -> dict[str, dict[str, str]]:
    rows = table_after(heading)
    table = {code(row["key"]): row for row in rows}
    assert len(table) == len(rows), f"a key is listed twice under {heading!r}"
    for key, row in table.items():
        for column in ("meaning", "paper symbol"):
            assert row[column], f"{key}: empty {column!r} (use — where there is none)"
    return table


def test_exgrpo_reference_lists_every_key_of_the_recipe_block_with_its_default():
    table = reference("## The `exgrpo` block")
    declared = recipe_blocks("exgrpo")["exgrpo_common.yaml"]
    assert list(table) == list(declared), "docs/configuration.md and exgrpo_common.yaml list different keys"
    for key, default in declared.items():
        assert typed(value(table[key]["default"])) == typed(default), f"exgrpo.{key}: default differs"


def test_exgrpo_reference_matches_the_settings_dataclass():
    table = reference("## The `exgrpo` block")
    fields = {f.name: f.default for f in dataclasses.fields(ExGRPOSettings)}
    assert set(table) == set(fields)
    for key, default in fields.items():
        assert typed(value(table[key]["default"])) == typed(default), f"exgrpo.{key}: ExGRPOSettings differs"


def test_every_recipe_override_of_the_exgrpo_block_is_listed():
    keys = set(reference("## The `exgrpo` block"))
    listed = {
        (code(row["recipe file"]), code(row["key"])): value(row["value"])
        for row in table_after("## Recipe overrides of the `exgrpo` block")
    }
    overrides = {
        (file, key): setting
        for file, block in recipe_blocks("exgrpo").items()
        if file != "exgrpo_common.yaml"
        for key, setting in block.items()
    }
    assert overrides, "no recipe overrides the exgrpo block: drop the table or this test"
    assert set(listed) == set(overrides), "docs/configuration.md's override table and the recipes differ"
    for (file, key), setting in overrides.items():
        assert key in keys, f"{file} sets exgrpo.{key}, which the reference does not list"
        assert typed(listed[file, key]) == typed(setting), f"{file}: exgrpo.{key} differs"


def test_exgrpo_cpu_reference_matches_the_cpu_students():
    table = reference("## The `exgrpo_cpu` block")
    blocks = recipe_blocks("exgrpo_cpu")
    assert set(blocks) == {"student/cpu.yaml", "sft_student/cpu.yaml"}
    for file, block in blocks.items():
        assert set(block) == set(table), f"{file}: exgrpo_cpu keys differ from the reference"
        for key, setting in block.items():
            assert typed(value(table[key]["default"])) == typed(setting), f"{file}: exgrpo_cpu.{key} differs"
