"""The recipes through verl's own entry points.

Every recipe is composed by verl's hydra entry point (``verl.trainer.main_ppo`` /
``verl.trainer.sft_trainer``, the ``main`` that ``python -m`` runs) with ``--cfg job``, most of them
with the exact arguments the run scripts print under DRY_RUN=1, then checked value by value and
with verl's own validation. The composes of one entry point share one subprocess
(exgrpo_verl.testing.hydra_cli), so verl's imports are paid once per entry point.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

import exgrpo_verl.plugin  # noqa: F401  (the config resolvers, as `import verl` registers them)
from exgrpo_verl.datasets import Record
from exgrpo_verl.local.cpu_precision import CPU_SETTINGS_KEYS, choose_precision
from exgrpo_verl.prompts import question_prompt
from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.schema import build_rl_row
from exgrpo_verl.testing import build_tokenizer, save_tiny_model
from exgrpo_verl.testing.verl_config import compose_trainer_config
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")

RECIPES = REPO_ROOT / "recipes"
SCRIPTS = (
    "run_sft_warmup.sh",
    "run_exgrpo_fsdp.sh",
    "run_exgrpo_megatron.sh",
    "run_grpo_fsdp.sh",
    "latest_hf.sh",
    "common.sh",
)
GPU_STUDENTS = ("qwen2_5_7b_instruct", "gemma_7b_it", "llama3_1_8b_instruct", "smoke")
RESOLVE = ("--cfg", "job", "--resolve")
MANAGER = "exgrpo_verl.rollout.ExGRPOAgentLoopManager"
REWARD_PATH = "pkg://exgrpo_verl.reward_fns.exgrpo_reward"
HYDRA_CLI = "exgrpo_verl.testing.hydra_cli"

# The chat template google/gemma-7b-it ships: no system turn, and roles must alternate from "user".
GEMMA_7B_IT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


# ---------------------------------------------------------------------------------------------
# helpers


def script_env(**values: str | Path) -> dict[str, str]:
    """The environment for a run script: this interpreter, DRY_RUN, and only the given variables."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRIPT_VARS}
    env.update({"PYTHON": sys.executable, "DRY_RUN": "1"})
    env.update({key: str(value) for key, value in values.items()})
    return env


_SCRIPT_VARS = {
    "DATA_DIR", "TRAIN_FILES", "VAL_FILES", "SFT_FILES", "SFT_VAL_FILES", "STUDENT", "MODEL_PATH", "SFT_DIR",
    "EXPERIMENT", "CKPT_DIR", "NNODES", "GPUS_PER_NODE", "ROLLOUT_TP", "TP", "PP", "CP", "ENGINE", "NODE_RANK",
    "MASTER_ADDR", "MASTER_PORT", "TORCHRUN", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
}  # fmt: skip


def run_script(name: str, *args: str, cwd: Path, **env: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RECIPES / name), *args], capture_output=True, text=True, cwd=cwd, env=script_env(**env), timeout=60
    )


def printed_command(name: str, *args: str, cwd: Path, **env: str | Path) -> list[str]:
    """The command a run script prints under DRY_RUN=1, split as the shell would."""
    result = run_script(name, *args, cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


RL_ENTRY, SFT_ENTRY = "verl.trainer.main_ppo", "verl.trainer.sft_trainer"


@dataclass
class Run:
    """One entry-point run: ``python -m module *args`` (or a launcher around it)."""

    module: str
    args: list[str]
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""


def launched_at(argv: list[str]) -> int:
    """Where the launched verl module's ``-m`` is (torchrun itself may run as ``python -m torch.distributed.run``)."""
    return max(i for i, arg in enumerate(argv[:-1]) if arg == "-m" and argv[i + 1].startswith("verl."))


def from_command(argv: list[str]) -> Run:
    """A printed command, python or torchrun: the module after ``-m`` and its arguments."""
    at = launched_at(argv)
    return Run(argv[at + 1], argv[at + 2 :])


def recipe(module: str, config_name: str, *overrides: str) -> Run:
    return Run(module, ["--config-path", str(RECIPES), "--config-name", config_name, *overrides])


def run_entry_points(runs: list[Run], cwd: Path) -> None:
    """Run every Run of one module in one interpreter (exgrpo_verl.testing.hydra_cli)."""
    (module,) = {run.module for run in runs}
    result = subprocess.run(
        [sys.executable, "-m", HYDRA_CLI, module],
        input=json.dumps([run.args for run in runs]),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for run, outcome in zip(runs, json.loads(result.stdout), strict=True):
        run.returncode, run.stdout, run.stderr = outcome["returncode"], outcome["stdout"], outcome["stderr"]


def composed_config(run: Run | subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, f"{run.args}\n{run.stderr[-3000:]}"
    return yaml.safe_load(run.stdout)


def get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def fake_checkpoint(run_dir: Path, step: int, layout: str, weights: bool = True) -> Path:
    """A verl run folder whose latest checkpoint has a Hugging Face copy at ``layout``."""
    hf = run_dir / f"global_step_{step}" / layout
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    if weights:
        (hf / "model.safetensors").write_bytes(b"")
    (run_dir / "latest_checkpointed_iteration.txt").write_text(f"{step}\n")
    return hf


def build_installed_copy(root: Path) -> Path:
    """A non-editable install of this checkout (a wheel build into a --target folder)."""
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("exgrpo_verl", "reward_fns", "data_preprocess", "recipes"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    target = root / "site"
    # this environment's setuptools builds it offline when new enough for pyproject.toml (>= 77)
    offline = int(version("setuptools").split(".")[0]) >= 77
    isolation = ["--no-build-isolation"] if offline else []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", target, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


INSTALLED_PROBE = """
import json, runpy, sys
import hydra.utils, verl
from omegaconf import OmegaConf
from verl.utils.import_utils import load_extern_object, resolve_config_path
compute_score = load_extern_object("{reward}", "compute_score")
loops = OmegaConf.load(resolve_config_path(OmegaConf.create({{"p": "${{exgrpo_path:agent_loops}}"}}).p))
print(json.dumps({{
    "plugin": sys.modules["exgrpo_verl.plugin"].__file__,
    "reward": sys.modules["exgrpo_verl.reward_fns.exgrpo_reward"].__file__,
    "score": compute_score("gsm8k", "\\\\boxed{{5}}", "5")["score"],
    "loops": {{entry.name: hydra.utils.get_class(entry._target_).__module__ for entry in loops}},
}}), file=sys.stderr)
sys.argv = ["main_ppo", *sys.argv[1:]]
runpy.run_module("verl.trainer.main_ppo", run_name="__main__")
"""


# ---------------------------------------------------------------------------------------------
# one compose per (recipe, overrides), all at once


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipes")
    ei = root / "ei"
    ei.mkdir()
    for name in ("rl_train.parquet", "val.parquet", "val_ood.parquet", "sft_train.parquet"):
        (ei / name).write_bytes(b"")
    fake_checkpoint(root / "sft_qwen", 7, "huggingface")
    (root / "model").mkdir()
    return root


@pytest.fixture(scope="module")
def composed(workspace) -> dict[str, Run | subprocess.CompletedProcess]:
    ei = workspace / "ei"
    model = workspace / "model"

    def script(name: str, **env: str | Path) -> Run:
        return from_command(printed_command(name, *RESOLVE, cwd=workspace, **env))

    runs = {
        "fsdp": recipe(RL_ENTRY, "exgrpo_fsdp", "--cfg", "job"),
        "fsdp_run": script(
            "run_exgrpo_fsdp.sh",
            DATA_DIR=ei,
            VAL_FILES=f"{ei}/val.parquet,{ei}/val_ood.parquet",
            SFT_DIR=workspace / "sft_qwen",
        ),
        "fsdp_gemma_2_nodes": script(
            "run_exgrpo_fsdp.sh",
            DATA_DIR=ei,
            STUDENT="gemma_7b_it",
            MODEL_PATH=model,
            NNODES="2",
            GPUS_PER_NODE="8",
            ROLLOUT_TP="4",
            EXPERIMENT="gemma_run",
            CKPT_DIR="ckpt",
        ),
        "fsdp_smoke": script("run_exgrpo_fsdp.sh", DATA_DIR=ei, STUDENT="smoke"),
        "cpu": recipe(
            RL_ENTRY,
            "exgrpo_cpu",
            *RESOLVE,
            f"actor_rollout_ref.model.path={model}",
            f"data.train_files={ei}/rl_train.parquet",
            f"data.val_files={ei}/val.parquet",
            "trainer.total_training_steps=5",
            "trainer.default_local_dir=ckpt",
        ),
        "cpu_run": script("run_exgrpo_fsdp.sh", DATA_DIR=ei, STUDENT="cpu", MODEL_PATH=model, CKPT_DIR="ckpt"),
        "sft_cpu": recipe(SFT_ENTRY, "sft_cpu", *RESOLVE, f"model.path={model}", f"data.train_files={ei}/sft.parquet"),
        "sft_cpu_run": script("run_sft_warmup.sh", DATA_DIR=ei, STUDENT="cpu", MODEL_PATH=model),
        "megatron": recipe(RL_ENTRY, "exgrpo_megatron", "--cfg", "job"),
        "megatron_run": script(
            "run_exgrpo_megatron.sh",
            DATA_DIR=ei,
            STUDENT="llama3_1_8b_instruct",
            MODEL_PATH=model,
            TP="2",
            PP="2",
            CP="2",
            NNODES="2",
            GPUS_PER_NODE="8",
            ROLLOUT_TP="4",
        ),
        "rl_typo": recipe(RL_ENTRY, "exgrpo_fsdp", "--cfg", "job", "actor_rollout_ref.actor.use_kl_los=1"),
        "fsdp_aux": recipe(RL_ENTRY, "exgrpo_fsdp", "--cfg", "job", "exgrpo.aux_sft_coef=0.25"),
        "sft": recipe(SFT_ENTRY, "sft_warmup", "--cfg", "job"),
        "sft_gemma_run": script("run_sft_warmup.sh", DATA_DIR=ei, STUDENT="gemma_7b_it"),
        "sft_megatron_run": script(
            "run_sft_warmup.sh",
            DATA_DIR=ei,
            STUDENT="llama3_1_8b_instruct",
            ENGINE="megatron",
            TP="2",
            PP="2",
            NNODES="2",
            GPUS_PER_NODE="8",
            NODE_RANK="0",
            MASTER_ADDR="10.0.0.1",
        ),
        "sft_typo": recipe(SFT_ENTRY, "sft_warmup", "--cfg", "job", "data.messages_kye=prompt"),
    }

    def installed() -> subprocess.CompletedProcess:
        site = build_installed_copy(workspace / "installed")
        argv = [
            sys.executable,
            "-c",
            INSTALLED_PROBE.format(reward=REWARD_PATH),
            "--config-path",
            str(site / "exgrpo_verl" / "recipes"),
            "--config-name",
            "exgrpo_fsdp",
            *RESOLVE,
            f"actor_rollout_ref.model.path={model}",
            f"data.train_files={ei}/rl_train.parquet",
            f"data.val_files={ei}/val.parquet",
        ]
        # the installed copy ahead of the editable one, run outside the checkout
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run(argv, capture_output=True, text=True, cwd=workspace, env=env, timeout=600)
        result.site = site  # type: ignore[attr-defined]
        return result

    def plugin_by_name() -> subprocess.CompletedProcess:
        code = "import verl, omegaconf; print(omegaconf.OmegaConf.create({'p': '${exgrpo_path:agent_loops}'}).p)"
        env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "exgrpo_verl.plugin"}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)

    by_module = {module: [run for run in runs.values() if run.module == module] for module in (RL_ENTRY, SFT_ENTRY)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        waits = [pool.submit(run_entry_points, group, workspace) for group in by_module.values()]
        others = {"installed": pool.submit(installed), "plugin_by_name": pool.submit(plugin_by_name)}
        for wait in waits:
            wait.result()
        return {**runs, **{name: future.result() for name, future in others.items()}}


# ---------------------------------------------------------------------------------------------
# ExGRPO on FSDP


def test_fsdp_recipe_without_overrides(composed):
    config = composed_config(composed["fsdp"])
    # values with no sensible default stay marked until the user passes them
    assert get(config, "actor_rollout_ref.model.path").startswith("${exgrpo_required:")
    assert get(config, "data.train_files").startswith("${exgrpo_required:")
    assert get(config, "data.val_files").startswith("${exgrpo_required:")
    assert get(config, "actor_rollout_ref.rollout.agent.agent_loop_config_path") == "${exgrpo_path:agent_loops}"
    assert config["model_engine"] == "dp"
    assert get(config, "actor_rollout_ref.actor._target_") == "verl.workers.config.FSDPActorConfig"
    assert get(config, "trainer.experiment_name") == "exgrpo_qwen2_5_7b_instruct"  # the default student
    # the exgrpo block: declared whole, with the documented defaults
    assert set(config["exgrpo"]) == {f.name for f in fields(ExGRPOSettings)}
    assert ExGRPOSettings.from_trainer_config(OmegaConf.create(config)) == ExGRPOSettings()


def test_aux_sft_weight_is_a_recipe_override(composed):
    """L_SFT-aux: λ composes as a plain override, and the recipe runs the trainer mode that installs it."""
    default, override = composed_config(composed["fsdp"]), composed_config(composed["fsdp_aux"])
    assert get(default, "exgrpo.aux_sft_coef") == 0.1
    assert get(override, "exgrpo.aux_sft_coef") == 0.25
    for config in (default, override):
        assert get(config, "trainer.v1.trainer_mode") == "exgrpo_sync"
        assert get(config, "trainer.use_v1") is True
    assert ExGRPOSettings.from_trainer_config(OmegaConf.create(override)).aux_sft_coef == 0.25


def test_unset_required_value_fails_with_its_key(composed):
    config = OmegaConf.create(composed_config(composed["fsdp"]))
    with pytest.raises(Exception, match=r"actor_rollout_ref.model.path is not set: pass actor_rollout_ref.model.path="):
        OmegaConf.resolve(config)


def check_with_verl(config: dict) -> None:
    """What verl's main_ppo does before starting Ray, plus the rollout section's dataclass (which
    rejects unknown keys, e.g. a student's typo)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils import omega_conf_to_dataclass
    from verl.utils.config import validate_config

    cfg = OmegaConf.create(config)
    assert need_reference_policy(cfg) and not need_critic(cfg)  # KL to the reference; GRPO has no critic
    validate_config(cfg, use_reference_policy=True, use_critic=False)
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert rollout.agent.agent_loop_manager_class == MANAGER
    omega_conf_to_dataclass(cfg.algorithm)


def test_fsdp_run_script_composes_the_method(composed, workspace):
    config = composed_config(composed["fsdp_run"])
    ei = workspace / "ei"
    arr = config["actor_rollout_ref"]
    # GRPO with KL loss to the reference = the SFT checkpoint the script found (latest step's HF copy)
    assert get(config, "algorithm.adv_estimator") == "grpo"
    assert get(config, "algorithm.use_kl_in_reward") is False
    assert arr["model"]["path"] == str(workspace / "sft_qwen" / "global_step_7" / "huggingface")
    actor = arr["actor"]
    assert (actor["use_kl_loss"], actor["kl_loss_type"], actor["kl_loss_coef"]) == (True, "low_var_kl", 0.001)
    assert actor["loss_agg_mode"] == "token-mean" and actor["policy_loss"]["loss_mode"] == "vanilla"
    assert actor["_target_"] == arr["ref"]["_target_"] == "verl.workers.config.FSDPActorConfig"
    assert config["model_engine"] == "dp" and actor["strategy"] == "fsdp"
    # group of n, probe agent loop (config file + manager), our reward
    rollout = arr["rollout"]
    assert rollout["name"] == "vllm" and rollout["n"] == 8
    agent = rollout["agent"]
    assert agent["agent_loop_config_path"] == str(RECIPES / "agent_loops.yaml")
    assert agent["agent_loop_manager_class"] == MANAGER
    assert agent["default_agent_loop"] == "single_turn_agent"
    assert get(config, "reward.custom_reward_function") == {"path": REWARD_PATH, "name": "compute_score"}
    assert get(config, "trainer.v1.sampler.custom_sampler") == {
        "path": "pkg://exgrpo_verl.rollout.v1_metrics",
        "name": "exgrpo_replay_buffer",
    }
    # the response budget holds k probe answers plus the final answer (and the injected user turns)
    settings = ExGRPOSettings.from_trainer_config(OmegaConf.create(config))
    assert settings == ExGRPOSettings()
    budget = settings.num_probes * settings.probe_max_tokens + settings.final_max_tokens
    assert rollout["response_length"] == config["data"]["max_response_length"] >= budget + 1000
    # single-turn greedy validation on both val files, per data_source
    assert get(config, "data.train_files") == str(ei / "rl_train.parquet")
    assert get(config, "data.val_files") == [str(ei / "val.parquet"), str(ei / "val_ood.parquet")]
    assert get(config, "data.reward_fn_key") == "data_source"
    assert rollout["val_kwargs"]["do_sample"] is False and rollout["val_kwargs"]["temperature"] == 0
    assert rollout["val_kwargs"]["n"] == 1
    # checkpoints: resumable, with a Hugging Face copy for eval
    assert actor["checkpoint"]["save_contents"] == ["model", "optimizer", "extra", "hf_model"]
    assert "hf_model" not in actor["checkpoint"]["load_contents"]
    trainer = config["trainer"]
    assert trainer["resume_mode"] == "auto" and trainer["save_freq"] > 0 and trainer["test_freq"] > 0
    assert trainer["val_before_train"] is True and trainer["use_v1"] is True
    check_with_verl(config)


def test_fsdp_gemma_on_two_nodes(composed, workspace):
    config = composed_config(composed["fsdp_gemma_2_nodes"])
    trainer, arr = config["trainer"], config["actor_rollout_ref"]
    assert (trainer["nnodes"], trainer["n_gpus_per_node"]) == (2, 8)
    assert trainer["experiment_name"] == "gemma_run"
    assert trainer["default_local_dir"] == str(workspace / "ckpt")
    assert arr["model"]["path"] == str(workspace / "model")
    assert arr["rollout"]["tensor_model_parallel_size"] == 4  # ROLLOUT_TP wins over the student's 2
    # Gemma's 8k context holds the prompt and the whole dialogue
    assert arr["rollout"]["max_model_len"] == 8192
    assert config["data"]["max_prompt_length"] + config["data"]["max_response_length"] <= 8192
    assert arr["actor"]["ppo_max_token_len_per_gpu"] == 8192
    check_with_verl(config)


def test_smoke_preset_is_one_gpu(composed):
    config = composed_config(composed["fsdp_smoke"])
    trainer, arr = config["trainer"], config["actor_rollout_ref"]
    assert (trainer["nnodes"], trainer["n_gpus_per_node"], trainer["total_training_steps"]) == (1, 1, 2)
    assert arr["model"]["path"] == "Qwen/Qwen2.5-0.5B-Instruct"  # no SFT checkpoint: the hub model
    assert arr["rollout"]["tensor_model_parallel_size"] == 1
    assert config["data"]["train_batch_size"] * arr["rollout"]["n"] <= 16
    settings = ExGRPOSettings.from_trainer_config(OmegaConf.create(config))
    assert (settings.num_probes, settings.partial_probes) == (3, 1)
    assert (
        settings.num_probes * settings.probe_max_tokens + settings.final_max_tokens < arr["rollout"]["response_length"]
    )
    check_with_verl(config)


# ---------------------------------------------------------------------------------------------
# without a GPU: the cpu student (hf rollout, CPU platform)


def test_cpu_recipe_is_the_method_on_the_cpu(composed, workspace):
    config = composed_config(composed["cpu"])
    trainer, arr = config["trainer"], config["actor_rollout_ref"]
    assert trainer["device"] == "cpu" and (trainer["nnodes"], trainer["n_gpus_per_node"]) == (1, 1)
    assert trainer["total_training_steps"] == 5 and trainer["default_local_dir"] == "ckpt"
    assert get(config, "ray_kwargs.ray_init.num_gpus") == 1  # logical GPUs for verl's resource pools
    assert arr["model"]["path"] == str(workspace / "model")
    # eager: torch's fused CPU attention is slow to differentiate in bf16
    assert arr["model"]["override_config"]["attn_implementation"] == "eager"
    # one gradient reduction per mini-batch, not per micro-batch
    assert arr["actor"]["fsdp_config"]["use_no_sync_for_gradient_accumulation"] is True
    assert arr["rollout"]["name"] == "hf" and arr["rollout"]["tensor_model_parallel_size"] == 1
    # compute precision from this CPU's features; fp32 master weights; the rollout samples in the same dtype
    chosen, _ = choose_precision("auto")
    assert get(config, "exgrpo_cpu.precision") == "auto"
    assert arr["rollout"]["calculate_log_probs"] is True
    assert arr["rollout"]["dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[chosen]
    for role in ("actor", "ref"):
        fsdp = arr[role]["fsdp_config"]
        assert fsdp["strategy"] == "fsdp2" and fsdp["param_offload"] is False and fsdp["model_dtype"] == "fp32"
        assert fsdp["mixed_precision"] == {"param_dtype": chosen, "reduce_dtype": "fp32", "buffer_dtype": "fp32"}
    # old log-probs from the rollout (one PPO epoch, one mini-batch), and glibc's allocator told to keep memory
    assert get(config, "algorithm.rollout_correction.bypass_mode") is True
    assert arr["actor"]["ppo_epochs"] == 1 and arr["actor"]["ppo_mini_batch_size"] == config["data"]["train_batch_size"]
    assert get(config, "ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_MMAP_MAX_") == "0"
    assert arr["rollout"]["engine_kwargs"]["hf"]["kv_cache_tokens"] > 0
    # the same method as the GPU recipes: GRPO + KL, probe dialogues, r_dsu and L_SFT-aux on
    assert get(config, "algorithm.adv_estimator") == "grpo" and arr["actor"]["use_kl_loss"] is True
    assert trainer["v1"]["trainer_mode"] == "exgrpo_sync"
    settings = ExGRPOSettings.from_trainer_config(OmegaConf.create(config))
    assert (settings.num_probes, settings.dsu_delta, settings.aux_sft_coef) == (3, 0.2, 0.1)
    assert (
        settings.num_probes * settings.probe_max_tokens + settings.final_max_tokens < arr["rollout"]["response_length"]
    )
    check_with_verl(config)


def test_cpu_student_in_the_run_script_is_the_cpu_recipe(composed, workspace):
    recipe_config = composed_config(composed["cpu"])
    script_config = composed_config(composed["cpu_run"])
    for key in ("actor_rollout_ref", "trainer.device", "ray_kwargs", "exgrpo", "data.train_batch_size"):
        if key == "actor_rollout_ref":  # same except the paths each was given
            assert get(script_config, "actor_rollout_ref.rollout") == get(recipe_config, "actor_rollout_ref.rollout")
        else:
            assert get(script_config, key) == get(recipe_config, key), key
    command = printed_command("run_exgrpo_fsdp.sh", cwd=workspace, DATA_DIR=workspace / "ei", STUDENT="cpu")
    # CPU even where a GPU is visible, and torch threads for every core in Ray's actors
    assert command[:3] == ["env", "VERL_PLATFORM=cpu", f"OMP_NUM_THREADS={len(os.sched_getaffinity(0))}"]
    assert "MALLOC_MMAP_MAX_=0" in command[:7]
    assert not any(arg.startswith("actor_rollout_ref.model.path") for arg in command)  # no SFT yet: the student's


def test_sft_cpu_recipe_and_script(composed, workspace):
    config = composed_config(composed["sft_cpu"])
    assert get(config, "trainer.device") == "cpu" and get(config, "engine.strategy") == "fsdp2"
    assert get(config, "model.override_config.attn_implementation") == "sdpa"
    assert "hf_model" in get(config, "checkpoint.save_contents")
    script_config = composed_config(composed["sft_cpu_run"])
    assert get(script_config, "engine") == get(config, "engine")
    chosen, _ = choose_precision("auto")
    assert get(config, "engine.mixed_precision.param_dtype") == chosen and get(config, "engine.model_dtype") == "fp32"
    launcher = printed_command("run_sft_warmup.sh", cwd=workspace, DATA_DIR=workspace / "ei", STUDENT="cpu")
    assert launcher[:2] == ["env", "VERL_PLATFORM=cpu"] and launcher[2].startswith("OMP_NUM_THREADS=")
    # torchrun's processes are not Ray's: the allocator settings come from the script
    assert {"MALLOC_MMAP_MAX_=0", "MALLOC_TRIM_THRESHOLD_=68719476736"} <= set(launcher[:7])
    assert "--nproc_per_node=1" in launcher and "sft_student=cpu" in launcher


# ---------------------------------------------------------------------------------------------
# ExGRPO on Megatron


MEGATRON_TARGETS = {
    "actor_rollout_ref.actor._target_": "verl.workers.config.McoreActorConfig",
    "actor_rollout_ref.actor.megatron._target_": "verl.workers.config.McoreEngineConfig",
    "actor_rollout_ref.actor.optim._target_": "verl.workers.config.McoreOptimizerConfig",
    "actor_rollout_ref.actor.checkpoint._target_": "verl.workers.config.McoreCheckpointConfig",
    "actor_rollout_ref.ref._target_": "verl.workers.config.McoreActorConfig",
    "actor_rollout_ref.ref.megatron._target_": "verl.workers.config.McoreEngineConfig",
    "actor_rollout_ref.rollout._target_": "verl.workers.config.RolloutConfig",
    "critic._target_": "verl.workers.config.McoreCriticConfig",
}


def test_megatron_recipe_is_verls_megatron_config(composed):
    config = composed_config(composed["megatron"])
    for key, target in MEGATRON_TARGETS.items():
        assert get(config, key) == target, key
    assert config["model_engine"] == "megatron" and get(config, "actor_rollout_ref.actor.strategy") == "megatron"
    assert "fsdp_config" not in config["actor_rollout_ref"]["actor"]
    megatron = get(config, "actor_rollout_ref.actor.megatron")
    assert (megatron["tensor_model_parallel_size"], megatron["pipeline_model_parallel_size"]) == (2, 1)
    assert megatron["context_parallel_size"] == 1
    # the same method as on FSDP
    assert get(config, "algorithm.adv_estimator") == "grpo"
    assert get(config, "actor_rollout_ref.actor.use_kl_loss") is True
    assert get(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class") == MANAGER
    assert ExGRPOSettings.from_trainer_config(OmegaConf.create(config)) == ExGRPOSettings()


def test_megatron_run_script_tp2_pp2_cp2_two_nodes(composed, workspace):
    config = composed_config(composed["megatron_run"])
    for key, target in MEGATRON_TARGETS.items():
        assert get(config, key) == target, key
    for role in ("actor", "ref"):  # the reference follows the actor's parallel sizes
        megatron = get(config, f"actor_rollout_ref.{role}.megatron")
        sizes = [megatron[f"{kind}_model_parallel_size"] for kind in ("tensor", "pipeline")]
        assert sizes + [megatron["context_parallel_size"]] == [2, 2, 2], role
    assert get(config, "actor_rollout_ref.rollout.tensor_model_parallel_size") == 4
    assert (get(config, "trainer.nnodes"), get(config, "trainer.n_gpus_per_node")) == (2, 8)
    assert get(config, "trainer.experiment_name") == "exgrpo_llama3_1_8b_instruct"
    assert get(config, "actor_rollout_ref.actor.checkpoint.save_contents")[-1] == "hf_model"
    assert get(config, "actor_rollout_ref.actor.megatron.use_mbridge") is True  # hf_model is saved through it
    assert get(config, "actor_rollout_ref.model.path") == str(workspace / "model")
    check_with_verl(config)


# ---------------------------------------------------------------------------------------------
# SFT warm-up


def test_sft_recipe_without_overrides(composed):
    config = composed_config(composed["sft"])
    assert get(config, "model.path") == "Qwen/Qwen2.5-7B-Instruct"
    assert get(config, "data.train_files").startswith("${exgrpo_required:")
    data = config["data"]
    assert data["messages_key"] == "messages" and data["pad_mode"] == "no_padding"
    assert data["enable_thinking_default"] is None  # not verl's string 'none' (which turns thinking on)
    assert get(config, "engine._target_") == "verl.workers.config.FSDPEngineConfig"
    assert get(config, "optim.lr") == 1e-5
    # a Hugging Face copy for ExGRPO to start from, where run_exgrpo_*.sh look for it
    assert "hf_model" in get(config, "checkpoint.save_contents")
    assert get(config, "checkpoint.load_contents") == ["model", "optimizer", "extra"]
    assert get(config, "trainer.experiment_name") == "sft_qwen2_5_7b_instruct"
    assert get(config, "trainer.default_local_dir") == "checkpoints/${trainer.project_name}/${trainer.experiment_name}"
    assert get(config, "trainer.project_name") == "exgrpo"


def test_sft_megatron_run_script(composed, workspace):
    config = composed_config(composed["sft_megatron_run"])
    assert get(config, "engine._target_") == "verl.workers.config.McoreEngineConfig"
    assert get(config, "optim._target_") == "verl.workers.config.McoreOptimizerConfig"
    assert (get(config, "engine.tensor_model_parallel_size"), get(config, "engine.pipeline_model_parallel_size")) == (
        2,
        2,
    )
    assert get(config, "optim.lr") == 1e-5  # the recipe's optimiser keys exist in both engines' groups
    assert get(config, "model.path") == "meta-llama/Llama-3.1-8B-Instruct"
    assert get(config, "data.train_files") == str(workspace / "ei" / "sft_train.parquet")
    assert (get(config, "trainer.nnodes"), get(config, "trainer.n_gpus_per_node")) == (2, 8)
    launcher = printed_command(
        "run_sft_warmup.sh",
        cwd=workspace,
        DATA_DIR=workspace / "ei",
        ENGINE="megatron",
        NNODES="2",
        GPUS_PER_NODE="8",
        NODE_RANK="1",
        MASTER_ADDR="10.0.0.1",
    )
    assert launcher[: launched_at(launcher)] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=10.0.0.1",
        "--master_port=29500",
        "--nproc_per_node=8",
    ]
    assert launcher[launched_at(launcher) + 1] == "verl.trainer.sft_trainer"


def test_gemma_sft_needs_and_gets_its_template(composed, tmp_path):
    """verl's SFT dataset renders each turn alone, which Gemma's stock template refuses; the
    student's template renders the stock text for the whole dialogue, token for token."""
    from transformers import AutoTokenizer
    from verl.trainer.sft_trainer import create_sft_dataset
    from verl.utils import omega_conf_to_dataclass

    config = OmegaConf.create(composed_config(composed["sft_gemma_run"]))
    assert config.model.path == "google/gemma-7b-it"
    model_dir = save_tiny_model(tmp_path / "gemma", "gemma")
    stock = AutoTokenizer.from_pretrained(model_dir)
    stock.chat_template = GEMMA_7B_IT_TEMPLATE
    stock.save_pretrained(model_dir)

    probe_turns = [
        ("Why do we add here?", "Buying more increases the count."),
        ("What if he bought 4 more?", "Then he would have 6."),
    ]
    messages = [
        turn for q, a in probe_turns for turn in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
    ]
    question = question_prompt("Tom has 2 apples and buys 3 more. How many apples does he have?", "gsm8k")
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": "2 + 3 = 5. \\boxed{5}"}]
    parquet = tmp_path / "sft_train.parquet"
    pd.DataFrame({"messages": [messages, messages[-2:]]}).to_parquet(parquet)

    config.model.path = str(model_dir)
    model = omega_conf_to_dataclass(config.model)
    dataset = create_sft_dataset([str(parquet)], config.data, model.tokenizer, model.processor)
    item = dataset[0]
    ids, mask = item["input_ids"].tolist(), item["loss_mask"].tolist()
    expected = stock.apply_chat_template(messages, tokenize=True)
    expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
    assert ids == expected  # the stock template's rendering of the whole dialogue
    trained = stock.decode([token for token, m in zip(ids, mask, strict=True) if m])
    assert trained == "".join(f"{a}<end_of_turn>\n" for _, a in probe_turns) + "2 + 3 = 5. \\boxed{5}<end_of_turn>\n"
    with pytest.raises(Exception, match="System role not supported"):
        model.tokenizer.apply_chat_template([{"role": "system", "content": "x"}, *messages[:1]], tokenize=False)

    config.model.custom_chat_template = None  # the stock template
    stock_model = omega_conf_to_dataclass(config.model)
    with pytest.raises(Exception, match="Conversation roles must alternate"):
        create_sft_dataset([str(parquet)], config.data, stock_model.tokenizer, stock_model.processor)


def test_rl_rows_need_no_system_turn(composed, tmp_path):
    """Real RL rows through verl's RLHFDataset with Gemma's stock template and the Gemma recipe's
    data settings: the overlong-prompt filter drops any row whose template render raises, so every
    row surviving proves the prompts need no system turn."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = composed_config(composed["fsdp_gemma_2_nodes"])
    tokenizer = build_tokenizer("gemma")
    tokenizer.chat_template = GEMMA_7B_IT_TEMPLATE
    records = [
        Record("g1", "gsm8k", "Tom has 2 apples and buys 3 more. How many?", "5", "test"),
        Record(
            "c1",
            "commonsense_qa",
            "Where do fish live?\n(A) sea (B) sky",
            "A",
            "test",
            choices={"A": "sea", "B": "sky"},
        ),
        Record("s1", "strategyqa", "Can a fish climb a tree?", "no", "test"),
        Record("d1", "date_understanding", "Today is 01/02/2020. What is tomorrow?", "01/03/2020", "test"),
    ]
    rows = [build_rl_row(r, i, None) for i, r in enumerate(records)]
    rows += [build_rl_row(records[0], 9, [{"rule": "inverse", "question": "Why add?", "teacher_answer": "5"}])]
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    data = OmegaConf.create({**config["data"], "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path)})
    assert data.filter_overlong_prompts is True
    dataset = RLHFDataset([str(parquet)], tokenizer, data)
    assert len(dataset) == len(rows)
    for row in rows:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        rendered = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert rendered.startswith("<bos><start_of_turn>user\n") and rendered.endswith("<start_of_turn>model\n")


# ---------------------------------------------------------------------------------------------
# typos fail


def test_typo_in_an_override_fails_composition(composed):
    for name, key in (("rl_typo", "use_kl_los"), ("sft_typo", "messages_kye")):
        result = composed[name]
        assert result.returncode != 0, name
        assert f"Key '{key}' is not in struct" in result.stderr, result.stderr[-2000:]


def test_typo_in_the_exgrpo_block_is_rejected(composed):
    config = OmegaConf.create(composed_config(composed["fsdp"]))
    with pytest.raises(Exception, match="not in struct"):  # composition refuses it without '+'
        OmegaConf.set_struct(config, True)
        OmegaConf.update(config, "exgrpo.num_probe", 3)
    OmegaConf.set_struct(config, False)
    config.exgrpo.num_probe = 3  # what '+exgrpo.num_probe=3' composes
    with pytest.raises(ValueError, match=r"unknown key\(s\) in the 'exgrpo' config block: \['num_probe'\]"):
        ExGRPOSettings.from_trainer_config(config)


def flat_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [key for k, v in node.items() for key in flat_keys(v, f"{prefix}{k}.")]
    return [prefix[:-1]]


def _is_ray_init_argument(key: str) -> bool:
    """verl passes ``ray_kwargs.ray_init`` to ``ray.init`` as keyword arguments: its keys are ray.init's."""
    import inspect

    import ray

    prefix = "ray_kwargs.ray_init."
    return key.startswith(prefix) and key[len(prefix) :].split(".")[0] in inspect.signature(ray.init).parameters


def unknown_keys(recipe: Path, base) -> list[str]:
    """Keys a recipe file sets that verl's config ``base`` does not have, except ``exgrpo.*`` (checked
    by ExGRPOSettings) and fields of the dataclass a section converts to (verl leaves some out of
    its YAML). A recipe file merges into the base without any key check, so a typo there would
    compose silently: this is the check."""
    data = yaml.safe_load(recipe.read_text())
    data.pop("defaults", None)
    data.pop("hydra", None)
    base_keys = set(flat_keys(OmegaConf.to_container(base, resolve=False)))
    settings_keys = {f"exgrpo.{f.name}" for f in fields(ExGRPOSettings)} | set(CPU_SETTINGS_KEYS)
    unknown = []
    for key in flat_keys(data) if data else []:  # a recipe may be only a defaults list
        if key in base_keys or key in settings_keys or _is_ray_init_argument(key):
            continue
        parent, _, name = key.rpartition(".")
        if name in _dataclass_fields(base, parent) or _under_a_mapping_field(base, key):
            continue
        unknown.append(key)
    return unknown


def _dataclass_fields(base, section: str) -> dict:
    """The fields of the dataclass ``section`` converts to (by its ``_target_``), by name."""
    import hydra.utils

    target = OmegaConf.select(base, f"{section}._target_", default=None) if section else None
    return {f.name: f for f in fields(hydra.utils.get_class(target))} if target else {}


def _under_a_mapping_field(base, key: str) -> bool:
    """Whether ``key`` lies inside a free-form dict field (e.g. model.override_config, mixed_precision)."""
    parts = key.split(".")
    for end in range(1, len(parts) - 1):
        field = _dataclass_fields(base, ".".join(parts[:end])).get(parts[end])
        if field is not None and "dict" in str(field.type).lower():
            return True
    return False


@pytest.fixture(scope="module")
def verl_bases():
    return {
        "dp": compose_trainer_config(config_name="ppo_trainer"),
        "megatron": compose_trainer_config(config_name="ppo_megatron_trainer"),
        "sft_fsdp": compose_trainer_config(config_name="sft_trainer_engine"),
        "sft_megatron": compose_trainer_config(["engine=megatron", "optim=megatron"], "sft_trainer_engine"),
    }


def test_every_key_a_recipe_sets_exists_in_verl(verl_bases):
    checks = [("exgrpo_fsdp.yaml", ["dp"]), ("exgrpo_megatron.yaml", ["megatron"]), ("exgrpo_cpu.yaml", ["dp"])]
    checks += [("exgrpo_common.yaml", ["dp", "megatron"]), ("sft_warmup.yaml", ["sft_fsdp", "sft_megatron"])]
    checks += [("sft_common.yaml", ["sft_fsdp", "sft_megatron"]), ("sft_cpu.yaml", ["sft_fsdp"])]
    # plain GRPO, the ablation's baseline (FSDP)
    checks += [("grpo_fsdp.yaml", ["dp"]), ("grpo_common.yaml", ["dp"])]
    checks += [(f"student/{s}.yaml", ["dp", "megatron"]) for s in GPU_STUDENTS]
    checks += [(f"sft_student/{s}.yaml", ["sft_fsdp", "sft_megatron"]) for s in GPU_STUDENTS]
    # the CPU student trains with FSDP only (the run scripts refuse Megatron with it)
    checks += [("student/cpu.yaml", ["dp"]), ("sft_student/cpu.yaml", ["sft_fsdp"])]
    assert {p.relative_to(RECIPES).as_posix() for p in RECIPES.rglob("*.yaml")} == {c[0] for c in checks} | {
        "agent_loops.yaml"
    }
    for name, bases in checks:
        for base in bases:
            assert unknown_keys(RECIPES / name, verl_bases[base]) == [], f"{name} against {base}"


def test_key_check_catches_a_typo(verl_bases, tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(
        "actor_rollout_ref:\n  actor:\n    use_kl_los: true\n  rollout:\n    agent:\n      agent_loop_manager_clas: x\n"
        "trainer:\n  nnode: 2\nexgrpo:\n  num_probe: 3\nray_kwargs:\n  ray_init:\n    num_gpu: 1\n    num_cpus: 4\n"
    )
    assert unknown_keys(recipe, verl_bases["dp"]) == [
        "actor_rollout_ref.actor.use_kl_los",
        "actor_rollout_ref.rollout.agent.agent_loop_manager_clas",
        "trainer.nnode",
        "exgrpo.num_probe",
        "ray_kwargs.ray_init.num_gpu",
    ]
    # inside a free-form mapping field anything goes; a misspelt mapping field is still caught
    recipe.write_text(
        "actor_rollout_ref:\n  model:\n    override_config:\n      attn_implementation: sdpa\n"
        "  actor:\n    fsdp_config:\n      mixed_precison:\n        param_dtype: fp32\n"
    )
    assert unknown_keys(recipe, verl_bases["dp"]) == ["actor_rollout_ref.actor.fsdp_config.mixed_precison.param_dtype"]


# ---------------------------------------------------------------------------------------------
# installed (non-editable) copy


def test_agent_loop_config_and_reward_resolve_from_an_installed_copy(composed, workspace):
    result = composed["installed"]
    config = composed_config(result)
    site = result.site
    recipes = site / "exgrpo_verl" / "recipes"
    probe = json.loads([line for line in result.stderr.splitlines() if line.startswith("{")][-1])
    assert probe["plugin"] == str(site / "exgrpo_verl" / "plugin.py")
    assert probe["reward"] == str(site / "exgrpo_verl" / "reward_fns" / "exgrpo_reward.py")
    assert probe["score"] == 1.0
    assert probe["loops"] == {"exgrpo_probe_dialogue": "exgrpo_verl.rollout.agent_loop"}
    assert get(config, "actor_rollout_ref.rollout.agent.agent_loop_config_path") == str(recipes / "agent_loops.yaml")
    assert get(config, "reward.custom_reward_function.path") == REWARD_PATH
    # every recipe file ships in the wheel
    shipped = {p.relative_to(recipes).as_posix() for p in recipes.rglob("*") if p.suffix in (".yaml", ".sh")}
    assert shipped == {p.relative_to(RECIPES).as_posix() for p in RECIPES.rglob("*") if p.suffix in (".yaml", ".sh")}


def test_plugin_loaded_by_name_also_registers_the_resolvers(composed):
    """With entry-point discovery off, VERL_USE_EXTERNAL_MODULES=exgrpo_verl.plugin is the fallback."""
    result = composed["plugin_by_name"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(RECIPES / "agent_loops.yaml")


# ---------------------------------------------------------------------------------------------
# run scripts


def test_scripts_parse():
    for name in SCRIPTS:
        result = subprocess.run(["bash", "-n", str(RECIPES / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_dry_run_prints_stock_verl_commands(workspace):
    ei = workspace / "ei"
    fsdp = printed_command("run_exgrpo_fsdp.sh", "trainer.total_epochs=1", cwd=workspace, DATA_DIR=ei, MODEL_PATH="m")
    assert fsdp[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]
    assert fsdp[3:7] == ["--config-path", str(RECIPES), "--config-name", "exgrpo_fsdp"]
    assert f"actor_rollout_ref.model.path={workspace / 'm'}" in fsdp
    assert fsdp[-1] == "trainer.total_epochs=1"  # extra arguments come last and win
    assert not any(arg.startswith("trainer.nnodes") for arg in fsdp)  # unset variables leave the recipe's value
    sft = printed_command("run_sft_warmup.sh", cwd=workspace, DATA_DIR=ei, GPUS_PER_NODE="4", MODEL_PATH="/m")
    assert sft[: launched_at(sft) + 2] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=4",
        "-m",
        "verl.trainer.sft_trainer",
    ]
    assert "model.path=/m" in sft and "sft_student=qwen2_5_7b_instruct" in sft
    visible = printed_command("run_sft_warmup.sh", cwd=workspace, DATA_DIR=ei, CUDA_VISIBLE_DEVICES="0,2,5")
    assert "--nproc_per_node=3" in visible and "trainer.n_gpus_per_node=3" in visible


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        ("run_exgrpo_fsdp.sh", {}, "set DATA_DIR"),
        ("run_exgrpo_fsdp.sh", {"DATA_DIR": "ei", "MODEL_PATH": "m", "TP": "2"}, "TP is set, but FSDP"),
        ("run_exgrpo_fsdp.sh", {"DATA_DIR": "ei"}, "no SFT checkpoint in checkpoints/exgrpo/sft_qwen2_5_7b_instruct"),
        ("run_exgrpo_megatron.sh", {"DATA_DIR": "ei", "STUDENT": "gemma"}, "STUDENT=gemma: no "),
        ("run_exgrpo_megatron.sh", {"DATA_DIR": "nowhere", "MODEL_PATH": "m"}, "TRAIN_FILES: no such file"),
        ("run_sft_warmup.sh", {"DATA_DIR": "ei", "NNODES": "2"}, "NNODES=2 needs NODE_RANK and MASTER_ADDR"),
        ("run_sft_warmup.sh", {"DATA_DIR": "ei", "PP": "2"}, "PP is set, but ENGINE=fsdp"),
        ("run_sft_warmup.sh", {"DATA_DIR": "ei", "ENGINE": "deepspeed"}, "ENGINE must be fsdp or megatron"),
        ("run_sft_warmup.sh", {"DATA_DIR": "ei", "STUDENT": "cpu", "ENGINE": "megatron"}, "STUDENT=cpu trains with"),
        ("run_exgrpo_megatron.sh", {"DATA_DIR": "ei", "STUDENT": "cpu"}, "use run_exgrpo_fsdp.sh"),
        ("run_grpo_fsdp.sh", {"DATA_DIR": "ei", "MODEL_PATH": "m"}, "set TRAIN_FILES: single-turn rows"),
    ],
)
def test_scripts_refuse_bad_settings(workspace, script, env, message):
    result = run_script(script, cwd=workspace, **env)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_latest_hf_finds_every_layout(tmp_path):
    layouts = ["huggingface", "model/huggingface", "actor/huggingface", "actor/model/huggingface"]
    for index, layout in enumerate(layouts):
        run_dir = tmp_path / f"run{index}"
        fake_checkpoint(run_dir, 3, layout)
        (run_dir / "global_step_9").mkdir()  # a later folder the tracker does not name
        (run_dir / "latest_checkpointed_iteration.txt").write_text("3\n")
        result = run_script("latest_hf.sh", str(run_dir), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(run_dir / "global_step_3" / layout)
    fake_checkpoint(tmp_path / "no_weights", 2, "huggingface", weights=False)
    result = run_script("latest_hf.sh", str(tmp_path / "no_weights"), cwd=tmp_path)
    assert result.returncode == 2 and "was 'hf_model' in checkpoint.save_contents?" in result.stderr


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("run_sft_warmup.sh", {}),
        ("run_sft_warmup.sh", {"STUDENT": "cpu"}),
        ("run_exgrpo_fsdp.sh", {"MODEL_PATH": "m"}),
        ("run_exgrpo_fsdp.sh", {"STUDENT": "cpu"}),
        ("run_grpo_fsdp.sh", {"MODEL_PATH": "m", "TRAIN_FILES": "ei/rl_train.parquet"}),
        ("run_exgrpo_megatron.sh", {"MODEL_PATH": "m"}),
    ],
)
def test_an_environment_that_is_not_activated_is_enough(workspace, script, env):
    """PYTHON alone names the environment: no launcher is looked up on a PATH without its bin/."""
    bare_path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if Path(p).is_dir())
    command = printed_command(script, cwd=workspace, DATA_DIR=workspace / "ei", PATH=bare_path, **env)
    if command[0] == "env":  # STUDENT=cpu: env VAR=value ... <launcher>
        command = command[next(i for i, arg in enumerate(command[1:], 1) if "=" not in arg) :]
    assert command[0] == sys.executable and Path(command[0]).is_file()
    assert command[1:3] in (["-m", "torch.distributed.run"], ["-m", "verl.trainer.main_ppo"])
