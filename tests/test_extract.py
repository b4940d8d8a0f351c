"""Final-answer extraction: boxed first (last complete one), then the last answer marker."""

import time

import pytest

from exgrpo_verl.answers.extract import (
    MAX_ANSWER_CHARS,
    extract_final_answer,
    final_answer_span,
    last_boxed,
    raw_answer_span,
)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{a{b{c}}d}", "a{b{c}}d"),
        ("\\boxed {7}", "7"),
        ("\\fbox{B}", "B"),
        ("\\boxed 5 is it", "5"),
        ("\\boxed{\\text{B}}", "B"),
        ("\\boxed{3} and an unclosed \\boxed{4", "3"),
        ("The answer is 18.", "18"),
        ("The final answer is: $18$", "18"),
        ("**Answer:** B", "B"),
        ("reasoning\n#### 72\n", "72"),
        ("The answer is 5.\nWait, recheck.\nThe answer is 6.", "6"),
        ("#### 5\nso the answer is 7", "7"),
        ("The answer is 7\n#### 5", "5"),
        ("\\boxed{9}\nThe answer is 7", "9"),
        ("I answered: nothing useful", None),
        ("no answer here", None),
        ("", None),
        ("\\boxed{}", None),
        ("The answer is ", None),
        ("\\boxed{" + "x" * (MAX_ANSWER_CHARS + 1) + "}", None),
        ("İİİ the answer is 4", "4"),
        # the answer ends with its sentence; a leading decimal point stays
        ("Final Answer: The final answer is 12,000,023. I hope it is correct.", "12,000,023"),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("The final answer is $x = 2. $ Done.", "x = 2"),
        ("The final answer is $x = 2.$ Done.", "x = 2"),
        ("The answer is 3.5. Next, we check.", "3.5"),
        ("The answer is approx. 5 apples", "approx. 5 apples"),
        ("The answer is 7. <|im_end|>", "7"),
        ("The answer is .5", ".5"),
        ("The answer is -.5.", "-.5"),
        ("The answer is \\((-6, 10)\\).", "(-6, 10)"),
        # boxes listed as one answer; anything else between boxes leaves the last
        ("\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "-2, 1"),
        ("\\boxed{1}, \\boxed{2} and \\boxed{3}", "1, 2, 3"),
        ("\\boxed{1} no, wait, \\boxed{2}", "2"),
        ("\\boxed{1} \\boxed{2}", "2"),
    ],
)
def test_span(text, span):
    assert final_answer_span(text) == span


def test_raw_span_keeps_latex_text():
    """Math answers are compared with their \\text{} as written, the way the gold writes it."""
    assert raw_answer_span("\\boxed{20\\text{ cm}^2}") == "20\\text{ cm}^2"
    assert final_answer_span("\\boxed{20\\text{ cm}^2}") == "20 cm^2"


def test_source_is_reported():
    assert extract_final_answer("\\boxed{1}").source == "boxed"
    assert extract_final_answer("The answer is 1").source == "marker"
    assert extract_final_answer("nothing") is None


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{" * 20_000,  # thousands of unclosed boxes
        "{" * 500_000 + "\\boxed{1}" + "}" * 500_000,
        "\\boxed{1}" * 100_000,
        "the answer is " * 50_000,
        "#" * 1_000_000,
        "\\boxed{" + "{" * 300_000 + "}" * 299_999,
    ],
)
def test_adversarial_inputs_stay_fast(text):
    start = time.perf_counter()
    last_boxed(text)
    final_answer_span(text)
    assert time.perf_counter() - start < 5.0


def test_hundreds_of_boxes_take_the_last():
    text = "".join(f"\\boxed{{{i}}} " for i in range(500))
    assert final_answer_span(text) == "499"
