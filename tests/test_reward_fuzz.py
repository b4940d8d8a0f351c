"""compute_score never raises and never hangs, whatever the model wrote (10,000 strings per source)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exgrpo_verl.data_sources import DATA_SOURCES
from exgrpo_verl.reward import FINAL_RESPONSE_KEY, compute_score

FRAGMENTS = [
    "\\boxed{",
    "\\boxed",
    "\\fbox{",
    "{",
    "}",
    "}}",
    "\\frac{",
    "\\sqrt{",
    "^",
    "_",
    "\\left(",
    "\\right)",
    "The answer is ",
    "answer:",
    "Final Answer: ",
    "####",
    "\n",
    " ",
    "$",
    "\\$",
    ",",
    ".",
    "-",
    "/",
    "=",
    "1",
    "18",
    "1,000",
    "3.5",
    "1e309",
    "0",
    "(B)",
    "B",
    "Option ",
    "yes",
    "No",
    "true",
    "entailment",
    "not ",
    "neutral",
    "contradiction",
    "05/01/2021",
    "2021-13-45",
    "\\text{",
    "\u2212",
    "\x00",
    "\ud7ff",
    "İ",
    "日本",
    "🙂",
    "\\infty",
    "x",
    "\\begin{pmatrix}",
    "&",
    "\\\\",
    "\\end{pmatrix}",
    "9^9^9^9",
]

responses = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=60).map("".join),
)
golds = st.one_of(
    st.sampled_from(["72", "\\frac{1}{2}", "B", "3", "yes", "no", "entailment", "05/01/2021", "increasing"]),
    st.text(max_size=20),
    st.integers(-3, 5),
    st.booleans(),
)
extras = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={FINAL_RESPONSE_KEY: responses, "choices": st.lists(st.text(max_size=8))}),
)


@pytest.mark.slow
@pytest.mark.parametrize("source", [s.name for s in DATA_SOURCES])
def test_fuzz_compute_score(source):
    slowest = [0.0]

    @settings(
        max_examples=10_000,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(response=responses, gold=golds, extra=extras)
    def check(response, gold, extra):
        start = time.perf_counter()
        result = compute_score(source, response, gold, extra, math_timeout_s=1.0)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        assert result["score"] in (0.0, 1.0)
        assert isinstance(result["acc"], bool) and isinstance(result["pred"], str)

    check()
    assert slowest[0] < 5.0, f"slowest call took {slowest[0]:.1f}s"


@pytest.mark.parametrize("source", [s.name for s in DATA_SOURCES])
def test_huge_and_pathological_responses(source):
    for response in [
        "",
        "x" * 1_000_000,
        "\\boxed{" * 10_000,
        "".join(f"\\boxed{{{i}}}" for i in range(500)),
        "{" * 100_000 + "}" * 50_000,
        "\udcff\x00\x1b[31m" * 1000,
        "The answer is " + "9" * 5000,
        "\\boxed{9^{9^{9^{9^{9}}}}}",
        "\\boxed{\\frac{" * 200 + "1" + "}{2}" * 200 + "}",
    ]:
        start = time.perf_counter()
        result = compute_score(source, response, "1", math_timeout_s=1.0)
        assert time.perf_counter() - start < 5.0
        assert result["score"] in (0.0, 1.0)
