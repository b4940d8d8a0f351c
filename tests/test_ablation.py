"""``python -m exgrpo_verl ablation`` without training: the arms, the plain-GRPO rows, the commands its
--dry-run prints (each composed by verl's main_ppo with ``--cfg job``), and resuming.

The whole command on the CPU, with real training, is tests/test_ablation_cpu.py.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml

from exgrpo_verl.__main__ import main
from exgrpo_verl.ablation import cli
from exgrpo_verl.ablation.arms import AblationError, select_arms
from exgrpo_verl.ablation.single_turn import single_turn_rows, write_single_turn_rows
from exgrpo_verl.datasets import Record
from exgrpo_verl.eval.metrics import dataset_metrics, group_averages
from exgrpo_verl.eval.results import write_results
from exgrpo_verl.schema import build_rl_row
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")

RECIPES = REPO_ROOT / "recipes"
MANAGER = "exgrpo_verl.rollout.ExGRPOAgentLoopManager"
RECORDS = [
    Record("g1", "gsm8k", "Tom has 2 apples and buys 3 more. How many apples does he have?", "5", "train"),
    Record(
        "c1", "commonsense_qa", "Where do fish live?\n(A) sea (B) sky", "A", "train", choices={"A": "sea", "B": "sky"}
    ),
]
PROBES = [
    {"rule": "inverse", "question": "Tom ends with 5 after buying 3. How many had he?", "teacher_answer": "\\boxed{2}"},
    {"rule": "principle", "question": "Why is addition the right operation?", "teacher_answer": None},
]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["ablation", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ablation")
    ei = root / "ei"
    ei.mkdir()
    pd.DataFrame([build_rl_row(r, i, PROBES) for i, r in enumerate(RECORDS)]).to_parquet(ei / "rl_train.parquet")
    pd.DataFrame([build_rl_row(r, i, None) for i, r in enumerate(RECORDS)]).to_parquet(ei / "val.parquet")
    for name in ("sft", "base"):
        (root / name).mkdir()
    return root


def base_args(workspace: Path, out: str, *extra: str) -> list[str]:
    return [
        "--sft-model",
        str(workspace / "sft"),
        "--data-dir",
        str(workspace / "ei"),
        "--out-dir",
        str(workspace / out),
        *extra,
    ]


def main_ppo_lines(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if "verl.trainer.main_ppo" in line]


# ---------------------------------------------------------------------------------------------
# arms and rows


def test_arms_default_subset_and_order():
    assert [a.name for a in select_arms(None, None)] == ["sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo"]
    assert [a.name for a in select_arms(None, "base")][-1] == "exgrpo_no_sft"
    assert [a.name for a in select_arms("exgrpo, sft", None)] == ["sft", "exgrpo"]  # the table's order
    with pytest.raises(AblationError, match="unknown arm.*grp0.*known: sft, grpo"):
        select_arms("sft,grp0", None)
    with pytest.raises(AblationError, match="exgrpo_no_sft trains from --base-model"):
        select_arms("exgrpo_no_sft", None)
    with pytest.raises(AblationError, match="names no arm"):
        select_arms(" , ", None)


def test_single_turn_rows_are_the_rl_questions_alone(workspace, tmp_path):
    target = tmp_path / "grpo_train.parquet"
    assert write_single_turn_rows(workspace / "ei" / "rl_train.parquet", target)
    assert not write_single_turn_rows(workspace / "ei" / "rl_train.parquet", target)  # up to date: kept
    source, rows = pd.read_parquet(workspace / "ei" / "rl_train.parquet"), pd.read_parquet(target)
    assert list(source["agent_name"]) == ["exgrpo_probe_dialogue"] * 2
    assert list(rows["agent_name"]) == ["single_turn_agent"] * 2
    for before, after in zip(source.to_dict("records"), rows.to_dict("records"), strict=True):
        assert [dict(m) for m in after["prompt"]] == [dict(m) for m in before["prompt"]]  # the question turn
        assert after["reward_model"] == before["reward_model"] and after["data_source"] == before["data_source"]
        assert "probes" in before["extra_info"] and "probes" not in after["extra_info"]
        assert after["extra_info"]["id"] == before["extra_info"]["id"]
    # the same shape as a val row of the same question (what verl's single_turn_agent reads)
    val = pd.read_parquet(workspace / "ei" / "val.parquet")
    assert set(rows.columns) == set(val.columns)


def test_single_turn_rows_refuse_bad_input(tmp_path):
    with pytest.raises(AblationError, match=r"x.parquet: not an RL parquet \(no column reward_model"):
        single_turn_rows(pd.DataFrame({"data_source": ["gsm8k"], "prompt": [[]], "extra_info": [{}]}), "x.parquet")
    bad = pd.DataFrame({"data_source": ["a"], "prompt": [[]], "reward_model": [{}], "extra_info": ["oops"]})
    with pytest.raises(AblationError, match="row 0: extra_info must be a mapping, got str"):
        single_turn_rows(bad, "x.parquet")
    broken = tmp_path / "rl_train.parquet"
    broken.write_text("not parquet")
    with pytest.raises(AblationError, match="cannot read it as parquet"):
        write_single_turn_rows(broken, tmp_path / "out.parquet")


# ---------------------------------------------------------------------------------------------
# --dry-run


@pytest.fixture(scope="module")
def dry_run(workspace) -> str:
    """The GPU student, all six arms, 3 steps, a user override that one arm's own setting overrides."""
    code, out, err = run_cli(
        *base_args(workspace, "out_gpu", "--base-model", str(workspace / "base"), "--steps", "3"),
        "--eval-datasets",
        "gsm8k,commonsense_qa",
        "--eval-limit",
        "5",
        "--dry-run",
        "--",
        "exgrpo.dsu_delta=0.3",
        "trainer.save_freq=7",
    )
    assert code == 0, err
    return out


def test_dry_run_prints_every_command_and_runs_nothing(dry_run, workspace):
    lines = [line for line in dry_run.splitlines() if line and not line.startswith("#")]
    trains = main_ppo_lines(dry_run)
    evals = [line for line in lines if " -m exgrpo_verl eval " in line]
    reports = [line for line in lines if " -m exgrpo_verl report " in line]
    assert len(trains) == 5 and len(evals) == 6 and len(reports) == 1 and len(lines) == 12
    assert subprocess.run(["bash", "-n"], input=dry_run, text=True).returncode == 0  # one valid shell script
    out = workspace / "out_gpu"
    # trained arms are evaluated on their last checkpoint's Hugging Face copy, as latest_hf.sh finds it
    for name in ("grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo", "exgrpo_no_sft"):
        finder = f'--model "$(bash {RECIPES}/latest_hf.sh {out / name / "checkpoints"})"'
        assert any(finder in line and f"--name {name} " in line for line in evals), name
    sft_eval = shlex.split(evals[0])
    assert sft_eval[sft_eval.index("--model") + 1] == str(workspace / "sft")
    for flag, value in (("--datasets", "gsm8k,commonsense_qa"), ("--limit", "5"), ("--max-tokens", "1024")):
        assert sft_eval[sft_eval.index(flag) + 1] == value
    assert sft_eval[sft_eval.index("--backend") + 1] == "auto"  # vLLM on a GPU node
    report = shlex.split(reports[0])
    assert report[report.index("report") + 1 :][:6] == [str(out / n / "eval.json") for n in cli_arm_names()]
    assert "--reference" in report and report[report.index("--reference") + 1] == "ablation"
    # nothing trained or evaluated: only the plain-GRPO rows exist
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["data/grpo_train.parquet"]


def cli_arm_names() -> list[str]:
    return ["sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo", "exgrpo_no_sft"]


@pytest.fixture(scope="module")
def composed(dry_run, workspace) -> dict[str, dict]:
    """Each printed main_ppo command with --cfg job, by verl's entry point (one interpreter)."""
    runs = {}
    for line in main_ppo_lines(dry_run):
        argv = shlex.split(line)
        name = next(a.split("=", 1)[1] for a in argv if a.startswith("trainer.experiment_name="))
        runs[name.removesuffix("_qwen2_5_7b_instruct")] = argv[argv.index("-m") + 2 :] + ["--cfg", "job", "--resolve"]
    result = subprocess.run(
        [sys.executable, "-m", "exgrpo_verl.testing.hydra_cli", "verl.trainer.main_ppo"],
        input=json.dumps(list(runs.values())),
        capture_output=True,
        text=True,
        cwd=workspace,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    configs = {}
    for name, outcome in zip(runs, json.loads(result.stdout), strict=True):
        assert outcome["returncode"] == 0, f"{name}: {outcome['stderr'][-3000:]}"
        configs[name] = yaml.safe_load(outcome["stdout"])
    return configs


def get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_every_training_command_composes_with_its_arm(composed, workspace):
    assert set(composed) == {"grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo", "exgrpo_no_sft"}
    out = workspace / "out_gpu"
    # (delta, lambda): the user's delta = 0.3 reaches the arms that keep the bonus, never the ones ablating it
    expected = {"exgrpo_plain": (0, 0), "exgrpo_aux": (0, 0.1), "exgrpo": (0.3, 0.1), "exgrpo_no_sft": (0.3, 0.1)}
    for name, config in composed.items():
        start = workspace / ("base" if name == "exgrpo_no_sft" else "sft")
        assert get(config, "actor_rollout_ref.model.path") == str(start)
        assert get(config, "trainer.default_local_dir") == str(out / name / "checkpoints")
        assert get(config, "trainer.total_training_steps") == 3 and get(config, "trainer.save_freq") == 7
        assert get(config, "trainer.val_before_train") is False
        assert get(config, "data.val_files") == str(workspace / "ei" / "val.parquet")
        assert get(config, "algorithm.adv_estimator") == "grpo" and get(config, "actor_rollout_ref.actor.use_kl_loss")
        validate_with_verl(config)
        if name == "grpo":
            continue
        assert get(config, "data.train_files") == str(workspace / "ei" / "rl_train.parquet")
        assert get(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class") == MANAGER
        assert get(config, "trainer.v1.trainer_mode") == "exgrpo_sync"
        assert (get(config, "exgrpo.dsu_delta"), get(config, "exgrpo.aux_sft_coef")) == expected[name], name


def test_grpo_is_exgrpo_without_what_exgrpo_adds(composed, workspace):
    grpo, exgrpo = composed["grpo"], composed["exgrpo"]
    assert get(grpo, "data.train_files") == str(workspace / "out_gpu" / "data" / "grpo_train.parquet")
    assert get(grpo, "actor_rollout_ref.rollout.agent.agent_loop_manager_class") is None  # verl's manager
    assert get(grpo, "actor_rollout_ref.rollout.agent.agent_loop_config_path") is None
    assert get(grpo, "trainer.v1.trainer_mode") == "sync"
    assert get(grpo, "trainer.v1.sampler.custom_sampler") == {"path": None, "name": None}
    assert get(grpo, "data.max_response_length") == get(exgrpo, "exgrpo.final_max_tokens") == 1024
    assert (get(grpo, "exgrpo.dsu_delta"), get(grpo, "exgrpo.aux_sft_coef")) == (0, 0)
    # everything else is the same run: reward, group size, KL, optimiser, batch sizes, backend
    differ = {
        key
        for key in set(flat(grpo)) | set(flat(exgrpo))
        if flat(grpo).get(key, "<absent>") != flat(exgrpo).get(key, "<absent>")
    }
    paths = {"data.train_files", "trainer.default_local_dir"}
    paths |= {k for k in differ if k.endswith("experiment_name")}  # trainer's, and the rollout tracer's copy
    lengths = {k for k in differ if k.endswith("response_length")}  # the single answer's budget, where it lands
    ablated = {
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class",
        "actor_rollout_ref.rollout.agent.agent_loop_config_path",
        "trainer.v1.trainer_mode",
        "trainer.v1.sampler.custom_sampler.path",
        "trainer.v1.sampler.custom_sampler.name",
        "exgrpo.dsu_delta",
        "exgrpo.aux_sft_coef",
    }
    assert differ - lengths == paths | ablated, sorted(differ - lengths - paths - ablated)
    assert "data.max_response_length" in lengths and "actor_rollout_ref.rollout.response_length" in lengths
    for key in (
        "reward.custom_reward_function.path",
        "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.actor.optim.lr",
    ):
        assert flat(grpo)[key] == flat(exgrpo)[key]


def flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict) and node:
        return {key: value for k, v in node.items() for key, value in flat(v, f"{prefix}{k}.").items()}
    return {prefix[:-1]: node}


def validate_with_verl(config: dict) -> None:
    """What main_ppo checks before starting Ray."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils import omega_conf_to_dataclass
    from verl.utils.config import validate_config

    cfg = OmegaConf.create(config)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)


# ---------------------------------------------------------------------------------------------
# settings and refusals


def test_cpu_student_evaluates_with_transformers_and_the_cpu_answer_budget(workspace):
    code, out, err = run_cli(*base_args(workspace, "out_cpu", "--student", "cpu", "--arms", "sft,exgrpo"), "--dry-run")
    assert code == 0, err
    evals = [shlex.split(line) for line in out.splitlines() if " -m exgrpo_verl eval " in line]
    for argv in evals:
        assert argv[argv.index("--backend") + 1] == "hf" and argv[argv.index("--max-tokens") + 1] == "128"
    (train,) = main_ppo_lines(out)
    argv = shlex.split(train)
    logger = workspace / "out_cpu" / "exgrpo" / "metrics"
    assert argv[:5] == ["mkdir", "-p", str(logger), "&&", f"VERL_FILE_LOGGER_PATH={logger / 'run-001.jsonl'}"]
    assert argv[5:7] == ["env", "VERL_PLATFORM=cpu"] and "student=cpu" in train
    assert not (workspace / "out_cpu").exists()  # no grpo arm: nothing written
    # an override of the training budget, or --eval-max-tokens, sets it
    code, out, _ = run_cli(
        *base_args(workspace, "o", "--student", "cpu", "--arms", "sft"), "--dry-run", "--", "exgrpo.final_max_tokens=64"
    )
    assert code == 0 and "--max-tokens 64 " in out
    code, out, _ = run_cli(*base_args(workspace, "o", "--arms", "sft", "--eval-max-tokens", "300"), "--dry-run")
    assert code == 0 and "--max-tokens 300 " in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--student", "gpt5"], "--student gpt5: no such student; known: cpu, gemma_7b_it"),
        (["--arms", "exgrpo_no_sft"], "exgrpo_no_sft trains from --base-model"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--eval-limit", "0"], "--eval-limit must be at least 1"),
        (["--eval-local-path", "gsm8k"], "--eval-local-path takes NAME=PATH, got 'gsm8k'"),
        (["--", "exgrpo.final_max_tokens=lots"], "override 'exgrpo.final_max_tokens=lots': not a whole number"),
    ],
)
def test_bad_arguments_fail_before_anything_runs(workspace, extra, message):
    args = base_args(workspace, "out_bad")
    if extra and extra[0] == "--":
        args += ["--dry-run", *extra]
    else:
        args += [*extra, "--dry-run"]
    code, out, err = run_cli(*args)
    assert code == 2 and message in err, err
    assert not main_ppo_lines(out)


def test_missing_data_names_the_file_and_its_command(workspace, tmp_path):
    (tmp_path / "rl_train.parquet").write_bytes(b"")
    code, _, err = run_cli("--sft-model", "m", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"))
    assert code == 2 and "no val.parquet (written by python -m exgrpo_verl ei-eval-set)" in err


def test_run_script_refusal_is_reported(workspace, monkeypatch):
    monkeypatch.setenv("TP", "2")  # run_grpo_fsdp.sh refuses parallel sizes FSDP has not
    code, _, err = run_cli(*base_args(workspace, "out_tp", "--arms", "grpo"), "--dry-run")
    assert code == 2 and "arm grpo: run_grpo_fsdp.sh refused the settings: error: TP is set" in err


# ---------------------------------------------------------------------------------------------
# resuming (commands replaced by a stand-in that leaves what they would leave)


class StandIn:
    """Replaces cli._run_logged: records each command and leaves its outputs (a checkpoint with a
    Hugging Face copy for main_ppo, a results file for eval), or fails the arms named in ``fail``."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> float | None:
        log.parent.mkdir(parents=True, exist_ok=True)
        if env and "VERL_FILE_LOGGER_PATH" in env:  # verl's file logger: one line per step
            record = {"step": 1, "data": {"critic/score/mean": 0.5, "run": Path(env["VERL_FILE_LOGGER_PATH"]).stem}}
            Path(env["VERL_FILE_LOGGER_PATH"]).write_text(json.dumps(record) + "\n")
        log.write_text("started\nTraceback: boom\n" if log.parent.name in self.fail else "ok\n")
        kind = "train" if "verl.trainer.main_ppo" in argv else "eval"
        self.calls.append((kind, log.parent.name))
        if log.parent.name in self.fail:
            return None
        if kind == "train":
            run_dir = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("trainer.default_local_dir=")))
            hf = run_dir / "global_step_1" / "actor" / "huggingface"
            hf.mkdir(parents=True, exist_ok=True)
            (hf / "config.json").write_text("{}")
            (hf / "model.safetensors").write_bytes(b"")
            (run_dir / "latest_checkpointed_iteration.txt").write_text("1\n")
        else:
            answers = [[{"dataset": "gsm8k", "correct": i == 0, "pred": "5"}] for i in range(2)]
            datasets = {"gsm8k": dataset_metrics(answers, ())}
            results = {
                "run": argv[argv.index("--name") + 1],
                "model": argv[argv.index("--model") + 1],
                "backend": "hf",
                "split": "test",
                "questions_from": "dataset loaders",
                "sampling": {"temperature": 0.0, "max_tokens": 16},
                "samples": 1,
                "datasets": datasets,
                "averages": group_averages(datasets),
            }
            write_results(argv[argv.index("--out") + 1], results)
        return 1.0


def test_rerun_skips_finished_arms_and_evaluations(workspace, monkeypatch):
    args = base_args(workspace, "out_resume", "--student", "cpu", "--steps", "1", "--eval-limit", "2")
    stand_in = StandIn(fail={"exgrpo_aux"})
    monkeypatch.setattr(cli, "_run_logged", stand_in)

    code, out, err = run_cli(*args)  # exgrpo_aux's training fails: stop there
    assert code == 1 and "[4/5] exgrpo_aux: training failed after" in err and "Traceback: boom" in err
    assert stand_in.calls == [
        ("eval", "sft"),
        ("train", "grpo"),
        ("eval", "grpo"),
        ("train", "exgrpo_plain"),
        ("eval", "exgrpo_plain"),
        ("train", "exgrpo_aux"),
    ]
    assert "[2/5] grpo: start (train, then evaluate; log" in out and "[2/5] grpo: done in " in out

    stand_in.calls, stand_in.fail = [], set()
    code, out, err = run_cli(*args)  # resumes at the arm that failed
    assert code == 0, err
    assert stand_in.calls == [("train", "exgrpo_aux"), ("eval", "exgrpo_aux"), ("train", "exgrpo"), ("eval", "exgrpo")]
    assert out.count("finished before, skipped") == 3
    report = (workspace / "out_resume" / "report.md").read_text()
    for name in ("sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo", "paper Qwen2.5-7B: + r_dsu = ExGRPO (exgrpo)"):
        assert f"| {name} |" in report, name
    assert (workspace / "out_resume" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the failed attempt's metrics file is kept beside the retry's; curves cover every trained arm
    metrics = workspace / "out_resume" / "exgrpo_aux" / "metrics"
    assert sorted(p.name for p in metrics.iterdir()) == ["run-001.jsonl", "run-002.jsonl"]
    curve_rows = (workspace / "out_resume" / "curves.csv").read_text().splitlines()
    assert curve_rows[0] == "arm,step,metric,value" and len(curve_rows) == 5
    assert "## Training curves" in report

    stand_in.calls = []
    code, out, _ = run_cli(*args)  # nothing new
    assert code == 0 and stand_in.calls == [] and out.count("finished before, skipped") == 5

    # other eval settings: every arm is evaluated again, none trained again
    code, out, _ = run_cli(*args[:-1], "3")
    assert code == 0 and stand_in.calls == [
        ("eval", n) for n in ("sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo")
    ]

    # other training settings: kept, and said so
    stand_in.calls = []
    code, out, _ = run_cli(*args[:-1], "3", "--", "actor_rollout_ref.actor.optim.lr=1e-4")
    assert code == 0 and stand_in.calls == []
    assert out.count("trained before with another command, kept; delete") == 4
