"""Small dataset files in each dataset's own (hub or original) format, written by the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

GSM8K_MAIN = [
    {
        "question": "Tom has 12 apples. He gives 5 apples to Ann and then buys 3 more. How many apples does he have?",
        "answer": "After giving some away he has 12 - 5 = <<12-5=7>>7 apples.\n"
        "After buying more he has 7 + 3 = <<7+3=10>>10 apples.\n#### 10",
    },
    {
        "question": "A box holds 6 pencils. How many pencils are in 4 boxes and 2 loose pencils?",
        "answer": "The boxes hold 6 * 4 = <<6*4=24>>24 pencils.\nWith the loose ones that is 24 + 2 = <<24+2=26>>26.\n"
        "#### 26",
    },
    {
        "question": "Mia had 40 marbles and lost 1,000 of her 2,000 stickers. She splits the marbles among 8 friends."
        " How many marbles does each friend get?",
        "answer": "Each friend gets 40 / 8 = <<40/8=5>>5 marbles.\n#### 5",
    },
]

GSM8K_SOCRATIC = [
    {
        "question": GSM8K_MAIN[0]["question"],
        "answer": "How many apples are left after giving some away? ** After giving some away he has 12 - 5 = "
        "<<12-5=7>>7 apples.\nHow many apples does he have in the end? ** After buying more he has 7 + 3 = "
        "<<7+3=10>>10 apples.\n#### 10",
    }
]


# (container, item, person): the nouns of gsm8k_word_problems' questions, cycled.
_WORD_PROBLEM_NOUNS = [
    ("box", "cups", "Lena"),
    ("crate", "apples", "Omar"),
    ("pack", "pens", "Ivy"),
    ("bag", "buns", "Raj"),
]


def gsm8k_word_problems(count: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``count`` three-step GSM8K-format questions with distinct answers, and their Socratic versions.

    For tests that need more rows than :data:`GSM8K_MAIN` holds (one batch of the cpu recipes and
    more) when the real copy in ../shared is absent. Every question has Socratic sub-questions, so
    decomposition probes carry gold answers (teacher rows for L_SFT-aux).
    """
    main, socratic = [], []
    for index in range(count):
        container, item, person = _WORD_PROBLEM_NOUNS[index % len(_WORD_PROBLEM_NOUNS)]
        per, boxes, loose, lost = 4 + index % 5, 3 + index, 2 + index % 3, 2 + index % 4
        held = per * boxes
        total = held + loose
        left = total - lost
        question = (
            f"Each {container} holds {per} {item}. {person} buys {boxes} of them and {loose} loose {item}, "
            f"then drops {lost} {item}. How many {item} does {person} have left?"
        )
        steps = [
            (f"How many {item} are in the {container}es?" if container.endswith("x") else
             f"How many {item} are in the {container}s?",
             f"The {boxes} full ones hold {boxes} * {per} = <<{boxes}*{per}={held}>>{held} {item}."),
            (f"How many {item} does {person} have with the loose ones?",
             f"With the loose ones that is {held} + {loose} = <<{held}+{loose}={total}>>{total} {item}."),
            (f"How many {item} are left?",
             f"After the dropped ones {total} - {lost} = <<{total}-{lost}={left}>>{left} {item} are left."),
        ]  # fmt: skip
        main.append({"question": question, "answer": "\n".join(s for _, s in steps) + f"\n#### {left}"})
        socratic.append({"question": question, "answer": "\n".join(f"{q} ** {s}" for q, s in steps) + f"\n#### {left}"})
    return main, socratic


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def dataset_files(root: Path) -> dict[str, tuple[list[Path], int]]:
    """dataset -> (local files in its own format, number of records they hold)."""
    files: dict[str, tuple[list[Path], int]] = {}
    files["gsm8k"] = (
        [write_jsonl(root / "gsm8k/test.jsonl", GSM8K_MAIN), write_jsonl(root / "gsm8k/soc.jsonl", GSM8K_SOCRATIC)],
        3,
    )
    files["gsm8k_reversal"] = ([root / "gsm8k/test.jsonl"], 3)
    files["math"] = (
        [
            write_jsonl(
                root / "math/test.jsonl",
                [
                    {"problem": "What is $1+1$?", "solution": "We get $\\boxed{1}$ wrong first, then $\\boxed{2}$."},
                    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": 1},
                ],
            )
        ],
        2,
    )
    files["arc_challenge"] = (
        [
            write_jsonl(
                root / "arc/validation.jsonl",
                [
                    {
                        "id": "arc-1",
                        "question": "Which is a mammal?",
                        "choices": {"text": ["shark", "whale", "trout", "eel"], "label": ["A", "B", "C", "D"]},
                        "answerKey": "B",
                    },
                    {
                        "id": "arc-2",
                        "question": "Which is a gas at room temperature?",
                        "choices": {"text": ["iron", "water", "oxygen", "salt"], "label": ["1", "2", "3", "4"]},
                        "answerKey": "3",
                    },
                ],
            )
        ],
        2,
    )
    files["commonsense_qa"] = (
        [
            write_parquet(
                root / "csqa/validation.parquet",
                [
                    {
                        "id": "c1",
                        "question": "Where do you keep milk cold?",
                        "question_concept": "milk",
                        "choices": {"label": list("ABCDE"), "text": ["oven", "fridge", "desk", "car", "shelf"]},
                        "answerKey": "B",
                    }
                ],
            )
        ],
        1,
    )
    files["openbookqa"] = (
        [
            write_csv(
                root / "obqa/validation.csv",
                [
                    {
                        "id": "o1",
                        "question_stem": "The sun is a",
                        "choices": json.dumps({"text": ["star", "planet", "moon", "comet"], "label": list("ABCD")}),
                        "answerKey": "A",
                    }
                ],
            )
        ],
        1,
    )
    files["boolq"] = (
        [
            write_jsonl(
                root / "boolq/validation.jsonl",
                [{"question": "is the sky blue", "answer": True, "passage": "The sky is blue on clear days."}],
            )
        ],
        1,
    )
    files["strategyqa"] = (
        [
            write_json(
                root / "strategyqa/task.json",
                {
                    "name": "strategyqa",
                    "examples": [
                        {
                            "input": "Can a cat fly unaided?",
                            "target_scores": {"Yes": 0, "No": 1},
                            "target": "No. Cats have no wings. Flying unaided needs wings.",
                        },
                        {"input": "Is water wet?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes. It is."},
                    ],
                },
            )
        ],
        2,
    )
    files["date_understanding"] = (
        [
            write_json(
                root / "date/task.json",
                {
                    "examples": [
                        {
                            "input": "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?",
                            "target_scores": {"05/01/2021": 1, "04/29/2021": 0, "05/02/2021": 0},
                        }
                    ]
                },
            )
        ],
        1,
    )
    files["tabmwp"] = (
        [
            write_json(
                root / "tabmwp/problems_test.json",
                {
                    "101": {
                        "question": "How many pets in total?",
                        "choices": None,
                        "answer": "7",
                        "unit": "",
                        "table_title": "Pets",
                        "table": "Animal | Number\ncats | 3\ndogs | 4",
                        "solution": "Add the numbers: 3 + 4 = 7.",
                        "ques_type": "free_text",
                        "ans_type": "integer_number",
                    },
                    "102": {
                        "question": "Which animal is more common?",
                        "choices": ["cats", "dogs"],
                        "answer": "dogs",
                        "unit": "",
                        "table_title": "Pets",
                        "table": "Animal | Number\ncats | 3\ndogs | 4",
                        "solution": "4 is more than 3, so dogs.",
                        "ques_type": "multi_choice",
                        "ans_type": "extractive_text",
                    },
                },
            )
        ],
        2,
    )
    files["anli"] = (
        [
            write_parquet(
                root / "anli/test_r1.parquet",
                [
                    {
                        "uid": "a1",
                        "premise": "A man sleeps.",
                        "hypothesis": "A man is awake.",
                        "label": 2,
                        "reason": "",
                    },
                    {
                        "uid": "a2",
                        "premise": "A dog runs.",
                        "hypothesis": "An animal moves.",
                        "label": 0,
                        "reason": "x",
                    },
                ],
            )
        ],
        2,
    )
    files["esnli"] = (
        [
            write_csv(
                root / "esnli/esnli_test.csv",
                [
                    {
                        "pairID": "e1",
                        "gold_label": "neutral",
                        "Sentence1": "A woman sings.",
                        "Sentence2": "A woman sings well.",
                        "Explanation_1": "Singing need not be good.",
                    }
                ],
            ),
            write_parquet(
                root / "esnli/test.parquet",
                [
                    {
                        "premise": "Kids play.",
                        "hypothesis": "Children play.",
                        "label": 0,
                        "explanation_1": "Kids are children.",
                    }
                ],
            ),
        ],
        2,
    )
    return files
