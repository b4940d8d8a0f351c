"""One small record per dataset (every answer type), for the reveals_answer tests."""

from __future__ import annotations

from exgrpo_verl.datasets import Record
from exgrpo_verl.datasets.render import nli_question, passage_question, table_question, with_options


def _choice(id: str, source: str, stem: str, choices: dict[str, str], answer: str, **extra) -> Record:
    return Record(id, source, with_options(stem, choices), answer, "test", choices=choices, **extra)


GSM8K = Record(
    "g1",
    "gsm8k",
    "Janet's ducks lay 16 eggs per day. She eats 3 and bakes with 4. She sells the rest for $2 each. "
    "How much does she make?",
    "18",
    "train",
    rationale="Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.",
)
GSM8K_ONE_STEP = Record(
    "g2",
    "gsm8k",
    "Mia has 40 marbles and shares them equally among 8 friends. How many marbles does each friend get?",
    "5",
    "train",
    rationale="Each friend gets 40 / 8 = 5 marbles.",
)
GSM8K_REVERSAL = Record(
    "r1",
    "gsm8k_reversal",
    "Janet's ducks lay some eggs per day. She eats 3, bakes with 4 and sells the rest for $2 each, making $18. "
    "How many eggs do the ducks lay per day?",
    "16",
    "test",
    rationale="She sells 18 / 2 = 9 eggs.\nThe ducks lay 9 + 3 + 4 = 16 eggs.",
)
MATH = Record(
    "m1",
    "math",
    "What is $\\frac{1}{2}+\\frac{1}{4}$? Express your answer as a common fraction.",
    "\\frac{3}{4}",
    "test",
    rationale="We rewrite $\\frac{1}{2}$ as $\\frac{2}{4}$ so both terms have the same denominator.\n"
    "So the sum is $\\frac{2}{4}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$.",
)
TABMWP = Record(
    "t1",
    "tabmwp",
    table_question(
        "Books read", "Name | Books\nAva | 12\nLeo | 7\nKim | 9", "How many more books did Ava read than Leo?"
    ),
    "5",
    "test",
    rationale="Find the numbers in the table.\nSubtract: 12 - 7 = 5.\nAva read 5 more books than Leo.",
)
TABMWP_CHOICE = _choice(
    "t2",
    "tabmwp",
    table_question(
        None,
        "Price | Demanded | Supplied\n$155 | 22,600 | 5,800\n$275 | 20,500 | 9,400",
        "At a price of $155, is there a shortage or a surplus?",
    ),
    {"A": "shortage", "B": "surplus"},
    "shortage",
    rationale="At $155 the quantity demanded is greater than the quantity supplied. So there is a shortage.",
)
COMMONSENSE_QA = _choice(
    "c1", "commonsense_qa", "Where is milk kept cold?", {"A": "oven", "B": "fridge", "C": "desk"}, "B"
)
ARC = _choice(
    "a1",
    "arc_challenge",
    "Which of these is a gas at room temperature?",
    {"1": "iron", "2": "water", "3": "oxygen", "4": "salt"},
    "3",
)
OPENBOOKQA = _choice("o1", "openbookqa", "The sun is a", {"A": "star", "B": "planet", "C": "moon", "D": "comet"}, "A")
DATE = _choice(
    "d1",
    "date_understanding",
    "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?",
    {"A": "05/01/2021", "B": "04/29/2021", "C": "05/02/2021"},
    "05/01/2021",
)
STRATEGYQA = Record(
    "s1",
    "strategyqa",
    "Can a cat fly unaided?",
    "no",
    "train",
    rationale="Cats have no wings. Flying unaided needs wings.",
)
BOOLQ = Record(
    "b1",
    "boolq",
    passage_question("The sky looks blue on clear days because air scatters blue light most.", "is the sky blue"),
    "yes",
    "validation",
)
ANLI = Record(
    "n1",
    "anli",
    nli_question("A man sleeps on a couch.", "A man is awake."),
    "contradiction",
    "test",
    rationale="A sleeping man is not awake.",
)
ESNLI = Record(
    "e1",
    "esnli",
    nli_question("A dog runs through the snow .", "An animal is outside ."),
    "entailment",
    "test",
    rationale="a dog is an animal and snow is outside .",
)

BY_DATASET: dict[str, Record] = {
    "gsm8k": GSM8K,
    "gsm8k_reversal": GSM8K_REVERSAL,
    "math": MATH,
    "tabmwp": TABMWP,
    "commonsense_qa": COMMONSENSE_QA,
    "arc_challenge": ARC,
    "openbookqa": OPENBOOKQA,
    "date_understanding": DATE,
    "strategyqa": STRATEGYQA,
    "boolq": BOOLQ,
    "anli": ANLI,
    "esnli": ESNLI,
}
