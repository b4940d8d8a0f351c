"""The learning check's reward and verdict (the check itself trains four runs: see its module)."""

from __future__ import annotations

import json

import pytest

from exgrpo_verl.reward import FINAL_RESPONSE_KEY
from exgrpo_verl.testing import learning_reward
from exgrpo_verl.testing.learning_check import RunResult, main, read_run


@pytest.fixture
def minus(monkeypatch):
    monkeypatch.setenv(learning_reward.SIGN_VARIABLE, "-1")


def test_score_is_the_ascii_share_of_the_final_answer_only():
    extra = {FINAL_RESPONSE_KEY: "ab\u00e9\u00e9"}
    scored = learning_reward.compute_score("gsm8k", "probe turns, all ascii", "1", extra)
    assert scored == {"score": 0.5, "ascii_share": 0.5}
    # single-turn rows have no final-answer field: the whole response is the answer
    assert learning_reward.compute_score("gsm8k", "a\u00e9\u00e9\u00e9", "1", {})["score"] == 0.25


def test_penalising_sign_flips_the_score(minus):
    assert learning_reward.compute_score("gsm8k", "abc\u00e9", "1")["score"] == -0.75


@pytest.mark.parametrize("output", ["", None, 7, "\ufffd" * 10_000, "\x00"])
def test_any_output_scores_without_raising(output):
    score = learning_reward.compute_score("gsm8k", output, "1", {FINAL_RESPONSE_KEY: output})["score"]
    assert 0.0 <= score <= 1.0


def test_a_truncated_dialogue_scores_zero():
    assert learning_reward.compute_score("gsm8k", "all ascii", "1", {FINAL_RESPONSE_KEY: ""})["score"] == 0.0


def test_a_bad_sign_is_refused(monkeypatch):
    monkeypatch.setenv(learning_reward.SIGN_VARIABLE, "2")
    with pytest.raises(ValueError, match=learning_reward.SIGN_VARIABLE):
        learning_reward.compute_score("gsm8k", "a", "1")


def write_metrics(path, scores, truncated=0.0):
    lines = [{"step": 0, "data": {"timing_s/step": 1.0}}]  # a line without a score is skipped
    lines += [
        {"step": step, "data": {"critic/score/mean": score, "exgrpo/truncated/fraction": truncated}}
        for step, score in enumerate(scores, 1)
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    return path


def test_a_run_passes_only_when_it_moves_the_rewarded_way(tmp_path):
    rising = [0.50, 0.52, 0.48, 0.55, 0.60, 0.62, 0.64]
    plus = read_run(write_metrics(tmp_path / "p.jsonl", rising), "exgrpo", 1)
    assert plus.move == pytest.approx(0.62 - 0.50)
    assert plus.passed(0.05) and not plus.passed(0.2)
    # a -1 run logs the negated share; read back, it is the share again, and rising is failing
    minus = read_run(write_metrics(tmp_path / "m.jsonl", [-s for s in rising]), "exgrpo", -1)
    assert minus.scores == pytest.approx(rising)
    assert minus.move == pytest.approx(-0.12) and not minus.passed(0.05)


def test_a_run_with_cut_off_dialogues_or_too_few_steps_fails(tmp_path):
    rising = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9]
    assert not read_run(write_metrics(tmp_path / "t.jsonl", rising, truncated=0.25), "exgrpo", 1).passed(0.05)
    assert not RunResult("grpo", 1, [0.1, 0.9], 0.0).passed(0.05)


def test_the_command_checks_its_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--gsm8k", str(tmp_path / "missing.jsonl")])
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--gsm8k", str(tmp_path), "--steps", "3"])
    assert "--steps" in capsys.readouterr().err
