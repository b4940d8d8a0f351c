"""The question turn every stage shows the student: the question plus a \\boxed{} instruction.

Training rows, the last turn of a probe dialogue, validation and eval all use this one prompt, so
the final-answer convention the checkers rely on (design card §1.4) is stated the same way
everywhere. Nothing here needs a system role (Gemma's chat template rejects one).
"""

from __future__ import annotations

from exgrpo_verl.data_sources import AnswerType, get_data_source

FINAL_ANSWER_INSTRUCTIONS: dict[AnswerType, str] = {
    AnswerType.NUMBER: "Think step by step, then give the final answer as a plain number in \\boxed{}.",
    AnswerType.MATH: "Think step by step, then give the final answer in \\boxed{}.",
    AnswerType.CHOICE: "Think step by step, then give the letter of the correct option in \\boxed{}.",
    AnswerType.YES_NO: "Think step by step, then answer yes or no in \\boxed{}.",
    AnswerType.NLI: "Think step by step, then answer entailment, neutral or contradiction in \\boxed{}.",
    AnswerType.DATE: "Think step by step, then give the date as MM/DD/YYYY in \\boxed{}.",
    AnswerType.FREE_TEXT: "Think step by step, then give the final answer in \\boxed{}.",
}


def question_prompt(question: str, data_source: str) -> str:
    """The user turn for ``question``: the question, a blank line, the final-answer instruction."""
    instruction = FINAL_ANSWER_INSTRUCTIONS[get_data_source(data_source).answer_type]
    return f"{question.strip()}\n\n{instruction}"


def question_messages(question: str, data_source: str) -> list[dict[str, str]]:
    """The single-turn chat prompt (one user message) used for RL rows, validation and eval."""
    return [{"role": "user", "content": question_prompt(question, data_source)}]
