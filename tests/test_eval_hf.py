"""The hf backend end to end: a tiny local model answers fixture questions of six answer types,
and the reported accuracy is what the project's checkers say about the saved answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from exgrpo_verl.__main__ import main
from exgrpo_verl.answers import grade
from exgrpo_verl.data_sources import AnswerType
from exgrpo_verl.eval.backends.base import render_prompt_ids
from exgrpo_verl.prompts import question_messages
from exgrpo_verl.testing import save_tiny_model
from tests.eval_fixtures import FIXTURE_RECORDS, write_records_jsonl

# What the tiny model is taught to say, by the answer type the prompt's instruction asks for:
# right for some fixture questions and wrong for others, so the accuracy is neither 0 nor 100.
TAUGHT = {
    AnswerType.NUMBER: "So \\boxed{7}.",
    AnswerType.MATH: "So \\boxed{7}.",
    AnswerType.CHOICE: "So \\boxed{B}.",
    AnswerType.YES_NO: "So \\boxed{yes}.",
    AnswerType.NLI: "So \\boxed{neutral}.",
    AnswerType.DATE: "So \\boxed{05/01/2021}.",
}


def _teach(model_dir: Path, steps: int = 100) -> None:
    """Overfit the tiny random model to answer each fixture prompt with TAUGHT[answer type]."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = []
    for record in FIXTURE_RECORDS:
        prompt = render_prompt_ids(tokenizer, question_messages(record.question, record.data_source))
        answer = tokenizer(TAUGHT[record.answer_type], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer, [-100] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is as fast, and much faster on a busy machine
    try:
        for _ in range(steps):
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module")
def taught_model(tmp_path_factory) -> Path:
    model_dir = save_tiny_model(tmp_path_factory.mktemp("tiny-answerer"), "qwen2")
    _teach(model_dir)
    return model_dir


def test_hf_accuracy_is_what_the_checkers_accept(taught_model, tmp_path):
    questions = write_records_jsonl(tmp_path / "questions.jsonl")
    out = tmp_path / "results" / "tiny.json"
    argv = ["eval", "--backend", "hf", "--model", str(taught_model), "--records", str(questions)]
    argv += ["--out", str(out), "--max-tokens", "24", "--batch-size", "4", "--no-progress"]
    assert main(argv) == 0

    results = json.loads(out.read_text())
    answers = [json.loads(line) for line in Path(results["generations"]).read_text().splitlines()[1:]]
    by_id = {r.id: r for r in FIXTURE_RECORDS}
    assert sorted(a["id"] for a in answers) == sorted(by_id)

    accepted: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for answer in answers:
        record = by_id[answer["id"]]
        # the prompt is the training prompt, with its \boxed{} instruction
        assert answer["prompt"] == question_messages(record.question, record.data_source)
        asked[record.data_source] += 1
        accepted[record.data_source] += grade(record.data_source, answer["response"], record.answer, record.choices)[0]

    assert set(results["datasets"]) == set(asked)
    for dataset, metrics in results["datasets"].items():
        assert (metrics["correct"], metrics["answers"]) == (accepted[dataset], asked[dataset]), dataset
        assert metrics["accuracy"] == pytest.approx(100 * accepted[dataset] / asked[dataset])
    held_in = [100 * accepted[d] / asked[d] for d in asked if results["datasets"][d]["group"] == "held_in"]
    assert results["averages"]["held_in"]["accuracy"] == pytest.approx(sum(held_in) / len(held_in))
    # the model learned its lines: some answers are right and some wrong
    assert 0 < sum(accepted.values()) < len(answers)
