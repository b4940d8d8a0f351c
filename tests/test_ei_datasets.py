"""Dataset loaders on fixture files in each dataset's own format (no hub access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exgrpo_verl.data_sources import DATA_SOURCES
from exgrpo_verl.datasets import DATASETS, DatasetFileError, DatasetRowError, load_records
from exgrpo_verl.datasets import loaders as loaders_module
from tests.ei_fixtures import GSM8K_MAIN, dataset_files, write_jsonl, write_parquet


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[list[Path], int]]:
    return dataset_files(tmp_path_factory.mktemp("datasets"))


def test_every_dataset_has_a_loader():
    assert set(DATASETS) == {source.name for source in DATA_SOURCES}


@pytest.mark.parametrize("name", [source.name for source in DATA_SOURCES])
def test_loader_reads_its_own_format(name, files):
    paths, expected = files[name]
    result = load_records(name, "test", local_paths=paths)
    assert len(result.records) == expected and not result.bad_rows
    for record in result.records:
        assert record.data_source == name and record.split == "test"
        assert record.question.strip() and record.answer.strip()
    assert len({record.id for record in result.records}) == expected


def test_gsm8k_rationale_drops_calculator_marks_and_merges_socratic(files):
    records = load_records("gsm8k", "test", local_paths=files["gsm8k"][0]).records
    first = records[0]
    assert first.answer == "10"
    assert (
        first.rationale
        == "After giving some away he has 12 - 5 = 7 apples.\nAfter buying more he has 7 + 3 = 10 apples."
    )
    assert "<<" not in first.rationale and "####" not in first.rationale
    assert first.sub_questions == (
        ("How many apples are left after giving some away?", "After giving some away he has 12 - 5 = 7 apples."),
        ("How many apples does he have in the end?", "After buying more he has 7 + 3 = 10 apples."),
    )
    assert records[1].sub_questions == ()  # only the main file has it
    assert [r.id for r in records] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]


def test_math_answer_is_the_last_boxed(files):
    records = load_records("math", "test", local_paths=files["math"][0]).records
    assert [r.answer for r in records] == ["2", "\\frac{1}{2}"]
    assert records[0].rationale.startswith("We get")


def test_arc_numeric_labels_become_letters(files):
    records = load_records("arc_challenge", "validation", local_paths=files["arc_challenge"][0]).records
    numeric = records[1]
    assert numeric.choices == {"A": "iron", "B": "water", "C": "oxygen", "D": "salt"}
    assert numeric.answer == "C"
    assert "(C) oxygen" in numeric.question


def test_choice_questions_render_their_options(files):
    record = load_records("openbookqa", "validation", local_paths=files["openbookqa"][0]).records[0]
    assert record.question == "The sun is a\n\nAnswer choices:\n(A) star\n(B) planet\n(C) moon\n(D) comet"
    assert record.answer == "A" and record.choices_column() == {
        "label": list("ABCD"),
        "text": list(record.choices.values()),
    }


def test_bigbench_tasks(files):
    strategy = load_records("strategyqa", "train", local_paths=files["strategyqa"][0]).records
    assert [(r.answer, r.rationale) for r in strategy] == [
        ("no", "Cats have no wings. Flying unaided needs wings."),
        ("yes", "It is."),
    ]
    date = load_records("date_understanding", "test", local_paths=files["date_understanding"][0]).records[0]
    assert date.answer == "05/01/2021"
    assert date.choices == {"A": "05/01/2021", "B": "04/29/2021", "C": "05/02/2021"}


def test_tabmwp_nli_and_boolq_records(files):
    free, choice = load_records("tabmwp", "test", local_paths=files["tabmwp"][0]).records
    assert free.id == "101" and free.answer == "7" and "cats | 3" in free.question and free.choices is None
    assert choice.choices == {"A": "cats", "B": "dogs"} and choice.answer == "dogs"
    anli = load_records("anli", "test", local_paths=files["anli"][0]).records
    assert [(r.id, r.answer, r.rationale) for r in anli] == [("a1", "contradiction", None), ("a2", "entailment", "x")]
    esnli = load_records("esnli", "test", local_paths=files["esnli"][0]).records
    assert [(r.id, r.answer, r.rationale) for r in esnli] == [
        ("e1", "neutral", "Singing need not be good."),
        ("esnli-test-1", "entailment", "Kids are children."),
    ]
    boolq = load_records("boolq", "validation", local_paths=files["boolq"][0]).records[0]
    assert boolq.answer == "yes" and boolq.question.endswith("Question: Is the sky blue?")


def test_gsm8k_reversal_hides_a_used_number(files):
    records = load_records("gsm8k_reversal", "test", local_paths=files["gsm8k_reversal"][0]).records
    first = records[0]
    assert first.answer == "12"
    assert first.question.startswith("Tom has x apples.")
    assert "The answer to the question above is 10." in first.question
    # Mia: 1,000 and 2,000 are not used by the solution; 40 is the first used number that occurs once.
    assert records[2].answer == "40" and "had x marbles" in records[2].question


def test_gsm8k_reversal_skips_problems_without_a_hideable_number(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [{"question": "Two and two make what?", "answer": "Two and two is <<2+2=4>>4.\n#### 4"}, *GSM8K_MAIN[:1]],
    )
    result = load_records("gsm8k_reversal", "test", local_paths=[path])
    assert len(result.records) == 1 and result.not_derivable == 1 and not result.bad_rows


@pytest.mark.parametrize(
    ("rows", "field", "where"),
    [
        ([{"question": "q?", "answer": "no final answer"}], "answer", "line 2"),
        ([{"question": "", "answer": "x\n#### 3"}], "question", "line 2"),
        ([{"answer": "x\n#### 3"}], "question", "line 2"),
        ([{"question": "q?", "answer": "x\n#### three"}], "answer", "line 2"),
    ],
)
def test_malformed_row_names_file_row_and_field(tmp_path, rows, field, where):
    path = write_jsonl(tmp_path / "bad.jsonl", [GSM8K_MAIN[0], *rows, GSM8K_MAIN[1]])
    with pytest.raises(DatasetRowError) as raised:
        load_records("gsm8k", "test", local_paths=[path])
    message = str(raised.value)
    assert str(path) in message and where in message and f"field {field!r}" in message
    result = load_records("gsm8k", "test", local_paths=[path], skip_bad_rows=True)
    assert len(result.records) == 2 and len(result.bad_rows) == 1
    assert result.bad_rows[0].field == field


def test_invalid_json_line_and_bad_options_are_row_errors(tmp_path):
    path = tmp_path / "arc.jsonl"
    good = {"id": "g", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "A"}
    wrong_key = {**good, "id": "w", "answerKey": "E"}
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(wrong_key) + "\n", encoding="utf-8")
    result = load_records("arc_challenge", "validation", local_paths=[path], skip_bad_rows=True)
    assert [r.id for r in result.records] == ["g"]
    messages = [str(error) for error in result.bad_rows]
    assert "line 2" in messages[0] and "not valid JSON" in messages[0]
    assert "line 3" in messages[1] and "'answerKey'" in messages[1] and "'E'" in messages[1]


def test_parquet_rows_are_numbered(tmp_path):
    path = write_parquet(tmp_path / "b.parquet", [{"question": "q", "answer": True, "passage": "p"}, {"question": "q"}])
    with pytest.raises(DatasetRowError, match=r"b\.parquet row 2, field 'answer or label': missing"):
        load_records("boolq", "validation", local_paths=[path])


def test_unreadable_files_are_file_errors(tmp_path):
    with pytest.raises(DatasetFileError, match="no such file"):
        load_records("gsm8k", "test", local_paths=[tmp_path / "missing.jsonl"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DatasetFileError, match="unsupported format"):
        load_records("gsm8k", "test", local_paths=[tmp_path / "x.txt"])
    (tmp_path / "x.json").write_text("{broken")
    with pytest.raises(DatasetFileError, match="not a valid JSON document"):
        load_records("gsm8k", "test", local_paths=[tmp_path / "x.json"])


def test_hub_defaults_per_dataset(monkeypatch):
    """Without local files each dataset reads its hub copy; check which splits/configs it asks for."""
    asked = []
    monkeypatch.setattr(
        loaders_module, "read_hub", lambda name, config, split: asked.append((name, config, split)) or []
    )
    load_records("anli", "test")
    load_records("gsm8k", "train")
    load_records("math", "test")
    load_records("arc_challenge", "validation", hub_config="ARC-Easy")
    assert asked == [
        ("facebook/anli", None, "test_r1"),
        ("facebook/anli", None, "test_r2"),
        ("facebook/anli", None, "test_r3"),
        ("openai/gsm8k", "main", "train"),
        ("openai/gsm8k", "socratic", "train"),
        ("HuggingFaceH4/MATH-500", None, "test"),
        ("allenai/ai2_arc", "ARC-Easy", "validation"),
    ]
    with pytest.raises(ValueError, match="no canonical Hugging Face copy"):
        load_records("tabmwp", "test")


def test_hub_path_reads_through_datasets(tmp_path, monkeypatch):
    """--hub-name goes through datasets.load_dataset; a local dataset folder stands in for the hub."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "esnli_repo"
    write_parquet(
        folder / "data" / "test-00000-of-00001.parquet",
        [
            {
                "premise": "Kids play.",
                "hypothesis": "Children play.",
                "label": 0,
                "explanation_1": "Kids are children.",
            },
            {"premise": "A cat.", "hypothesis": "A dog.", "label": 2, "explanation_1": "Different animals."},
        ],
    )
    result = load_records("esnli", "test", hub_name=str(folder))
    assert [r.answer for r in result.records] == ["entailment", "contradiction"]
    assert [r.id for r in result.records] == ["esnli-test-0", "esnli-test-1"]


@pytest.mark.parametrize(
    ("dataset", "row", "field"),
    [
        ("gsm8k", {"question": 5, "answer": "x\n#### 3"}, "question"),
        ("gsm8k", {"question": ["q?"], "answer": "x\n#### 3"}, "question"),
        ("boolq", {"question": 1.5, "answer": True, "passage": "p"}, "question"),
        ("math", {"problem": 12, "solution": "\\boxed{12}"}, "problem"),
        ("gsm8k_reversal", {"question": True, "answer": 7}, "question"),
    ],
)
def test_a_question_field_must_be_a_string(tmp_path, dataset, row, field):
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DatasetRowError, match=rf"line 1, field '{field}': must be a string, got "):
        load_records(dataset, "test", local_paths=[path])


def test_numeric_answers_are_still_accepted(tmp_path):
    """Answers and labels may be numbers (a ready-made GSM8K-Reversal row, a TabMWP answer)."""
    path = write_jsonl(tmp_path / "reversal.jsonl", [{"question": "x + 3 = 10. What is x?", "answer": 7}])
    assert load_records("gsm8k_reversal", "test", local_paths=[path]).records[0].answer == "7"
    table = {"1": {"question": "How many?", "answer": 7, "table": "a | 7", "choices": None}}
    (tmp_path / "problems_test.json").write_text(json.dumps(table), encoding="utf-8")
    assert load_records("tabmwp", "test", local_paths=[tmp_path / "problems_test.json"]).records[0].answer == "7"


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ('{"question": "q?", "answer": "x\\n#### 3"', 41),  # no closing brace: just past the line's 40 characters
        ("{'question': 'q?'}", 2),
        ('{"question": "q?",, "answer": "x"}', 19),
    ],
)
def test_invalid_json_reports_the_column_in_its_own_line(tmp_path, line, column):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(GSM8K_MAIN[0]) + "\n" + line + "\n" + json.dumps(GSM8K_MAIN[1]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetRowError) as raised:
        load_records("gsm8k", "test", local_paths=[path])
    assert f"{path} line 2: not valid JSON (" in str(raised.value) and f"at column {column})" in str(raised.value)


def test_the_skip_hint_is_given_only_when_rows_are_not_skipped(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [GSM8K_MAIN[0], {"question": "q?", "answer": "no marks"}])
    with pytest.raises(DatasetRowError, match="pass --skip-bad-rows"):
        load_records("gsm8k", "test", local_paths=[path])
    skipped = load_records("gsm8k", "test", local_paths=[path], skip_bad_rows=True).bad_rows
    assert len(skipped) == 1 and "line 2, field 'answer'" in str(skipped[0]) and "skip-bad-rows" not in str(skipped[0])
