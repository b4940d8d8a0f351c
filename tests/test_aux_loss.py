"""L_SFT-aux: teacher rows from the agent loop, and the actor loss built on verl's ppo_loss."""

from __future__ import annotations

import math
import pickle
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.padding_utils import construct_minimal_padding_template
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss

from exgrpo_verl.rollout.agent_loop import TEACHER_TOKENS_FIELD
from exgrpo_verl.rollout.managers import _require_aux_trainer
from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.testing import build_tiny_model, build_tokenizer
from exgrpo_verl.testing.actor import pad_rollouts, response_log_probs, sequence_log_probs
from exgrpo_verl.testing.servers import ScriptedServer
from exgrpo_verl.training.aux_loss import GAP_METRIC, NLL_METRIC, TOKENS_METRIC, exgrpo_actor_loss
from exgrpo_verl.training.trainer import TRAINER_MODE, ExGRPOTrainerSync
from tests.conftest import DEVICES
from tests.rollout_helpers import PROBES, QUESTION, make_row, run_dialogues, trainer_config

AUX = ("++exgrpo.aux_sft_coef=0.5",)


def _reply(prompt: str) -> str:
    return "\\boxed{5}" if QUESTION in prompt else "a student answer"


def _dialogue_with_teacher_rows(session: int = 0):
    tokenizer = build_tokenizer("qwen2")
    outputs = run_dialogues(tokenizer, ScriptedServer(tokenizer, _reply), [(make_row(), session)], overrides=AUX)[0]
    return tokenizer, outputs


def test_agent_loop_emits_teacher_rows_before_the_dialogue():
    tokenizer, outputs = _dialogue_with_teacher_rows()
    *teacher_rows, dialogue = outputs
    rules = dialogue.extra_fields["exgrpo_probe_rules"]
    with_answers = [r for r in rules if next(p for p in PROBES if p["rule"] == r)["teacher_answer"]]
    assert [row.extra_fields["exgrpo_teacher_rule"] for row in teacher_rows] == with_answers
    for row in teacher_rows:
        answer = next(p for p in PROBES if p["rule"] == row.extra_fields["exgrpo_teacher_rule"])["teacher_answer"]
        count = row.extra_fields[TEACHER_TOKENS_FIELD]
        assert row.prompt_ids == dialogue.prompt_ids
        assert set(row.response_mask) == {0} and len(row.response_mask) == len(row.response_ids)
        assert tokenizer.decode(row.response_ids[-count:], skip_special_tokens=True) == answer
        # the context is the student's own dialogue up to this probe
        context = row.response_ids[:-count]
        assert dialogue.response_ids[: len(context)] == context
        question = next(p for p in PROBES if p["rule"] == row.extra_fields["exgrpo_teacher_rule"])["question"]
        full_text = tokenizer.decode(row.prompt_ids + context)
        assert full_text.rstrip().endswith("assistant") and question in full_text.split("<|im_start|>user")[-1]


def test_no_teacher_rows_without_coefficient_or_answers():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, _reply)
    plain = run_dialogues(tokenizer, server, [(make_row(), 0)])[0]
    assert not isinstance(plain, list)
    no_answers = [{**p, "teacher_answer": None} for p in PROBES]
    assert not isinstance(run_dialogues(tokenizer, server, [(make_row(no_answers), 0)], overrides=AUX)[0], list)


def _nested(data):
    """The same micro-batch in the jagged (no-padding) layout verl's engines train on."""
    prompt_width = data["prompts"].shape[1]
    rows = []
    for i in range(data.batch_size[0]):
        valid = data["attention_mask"][i].bool()
        prompt_valid, response_valid = valid[:prompt_width], valid[prompt_width:]
        rows.append(
            {
                "prompts": data["prompts"][i][prompt_valid],
                "responses": data["responses"][i][response_valid],
                "response_mask": data["response_mask"][i][response_valid],
                "old_log_probs": data["old_log_probs"][i][response_valid],
                "advantages": data["advantages"][i][response_valid],
                "extra_fields": list(data["extra_fields"])[i],
            }
        )
    nested = tu.list_of_dict_to_tensordict(rows)
    for key in ("dp_size", "batch_num_tokens", "global_batch_size"):
        tu.assign_non_tensor_data(nested, key, tu.get_non_tensor_data(data, key, None))
    return nested


def _loss_inputs(outputs, tokenizer):
    """A micro-batch of the dialogue plus its teacher rows, with verl's fields."""
    batch = pad_rollouts(
        [o.prompt_ids for o in outputs],
        [o.response_ids for o in outputs],
        [o.response_mask for o in outputs],
        tokenizer.pad_token_id,
    )
    rows = len(outputs)
    data = tu.get_tensordict(
        {
            **batch,
            "old_log_probs": torch.zeros(rows, batch["responses"].shape[1]),
            "advantages": torch.linspace(-1.0, 1.0, rows).unsqueeze(1) * batch["response_mask"],
            "extra_fields": [dict(o.extra_fields) for o in outputs],
        }
    )
    for key, value in {"dp_size": 1, "batch_num_tokens": None, "global_batch_size": None}.items():
        tu.assign_non_tensor_data(data, key, value)
    return batch, data


def _actor_config():
    config = trainer_config("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4")
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["padded", "nested"])
def test_gradient_is_ppo_plus_lambda_times_teacher_nll(layout, device):
    tokenizer, outputs = _dialogue_with_teacher_rows()
    # a second dialogue without teacher rows makes the batch mixed
    other = run_dialogues(tokenizer, ScriptedServer(tokenizer, _reply), [(make_row(), 2)])[0]
    outputs = [*outputs, other]
    batch, data = _loss_inputs(outputs, tokenizer)
    model = build_tiny_model(tokenizer, "qwen2").to(device)
    data = data.to(device)
    actor, coef = _actor_config(), 0.5
    with torch.no_grad():
        data["old_log_probs"] = response_log_probs(sequence_log_probs(model, batch), batch)
    if layout == "nested":
        data = _nested(data)

    ours, metrics = exgrpo_actor_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data, aux_coef=coef)
    plain, _ = ppo_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data)

    # the teacher NLL computed directly with the model, independently of verl's layout helpers
    nll, teacher_tokens = torch.zeros((), device=device), 0
    for output in outputs:
        count = output.extra_fields.get(TEACHER_TOKENS_FIELD, 0)
        if not count:
            continue
        sequence = torch.tensor([output.prompt_ids + output.response_ids], device=device)
        log_probs = torch.log_softmax(model(input_ids=sequence).logits[0, :-1], dim=-1)
        targets = sequence[0, 1:]
        token_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        nll = nll - token_log_probs[-count:].sum()
        teacher_tokens += count
    response_tokens = sum(sum(o.response_mask) for o in outputs)
    direct = plain + coef * nll / response_tokens

    assert teacher_tokens > 0 and metrics[TOKENS_METRIC].values == [teacher_tokens]
    assert metrics[NLL_METRIC].values == [pytest.approx((nll / teacher_tokens).item(), rel=1e-4)]
    assert ours.item() == pytest.approx(direct.item(), rel=1e-5)
    for got, want in zip(_grads(model, ours), _grads(model, direct), strict=True):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)


def test_zero_coefficient_is_exactly_plain_ppo():
    tokenizer, outputs = _dialogue_with_teacher_rows()
    batch, data = _loss_inputs(outputs, tokenizer)
    model = build_tiny_model(tokenizer, "qwen2")
    actor = _actor_config()
    ours, metrics = exgrpo_actor_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data, aux_coef=0.0)
    plain, plain_metrics = ppo_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data)
    assert ours.item() == plain.item() and NLL_METRIC not in metrics
    assert set(metrics) == set(plain_metrics)
    for got, want in zip(_grads(model, ours), _grads(model, plain), strict=True):
        assert torch.equal(got, want)


def test_rows_without_teacher_answers_contribute_nothing():
    tokenizer = build_tokenizer("qwen2")
    outputs = run_dialogues(tokenizer, ScriptedServer(tokenizer, _reply), [(make_row(), s) for s in (0, 3)])
    batch, data = _loss_inputs(outputs, tokenizer)
    model = build_tiny_model(tokenizer, "qwen2")
    actor = _actor_config()
    ours, _ = exgrpo_actor_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data, aux_coef=0.5)
    plain, _ = ppo_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data)
    assert ours.item() == plain.item()


def _verl_padding_row(template, eos_token_id: int):
    """The synthetic row verl appends to fill a batch up to the mini-batch multiple, made by verl's own
    template function from ``template`` (the batch's first row; here a teacher-forced one)."""
    source = {
        "prompts": torch.tensor(template.prompt_ids),
        "responses": torch.tensor(template.response_ids),
        "response_mask": torch.tensor(template.response_mask),
        "extra_fields": dict(template.extra_fields),
    }
    sample, tag = construct_minimal_padding_template(source, {}, eos_token_id)
    assert tag["is_padding"] and sample["extra_fields"][TEACHER_TOKENS_FIELD]  # the count came along
    return SimpleNamespace(
        prompt_ids=sample["prompts"].tolist(),
        response_ids=sample["responses"].tolist(),
        response_mask=sample["response_mask"].tolist(),
        extra_fields=sample["extra_fields"],
    )


def test_verls_synthetic_padding_rows_add_no_teacher_tokens():
    tokenizer, outputs = _dialogue_with_teacher_rows()
    teacher_rows = [o for o in outputs if o.extra_fields.get(TEACHER_TOKENS_FIELD)]
    padded = [*outputs, *(_verl_padding_row(teacher_rows[0], tokenizer.eos_token_id) for _ in range(3))]
    model = build_tiny_model(tokenizer, "qwen2")
    actor = _actor_config()
    results = {}
    for name, rows in {"real": outputs, "with padding": padded}.items():
        batch, data = _loss_inputs(rows, tokenizer)
        data["advantages"] = torch.zeros_like(data["advantages"])  # the rows' order moves advantages
        results[name] = exgrpo_actor_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data, aux_coef=0.5)
    (loss, metrics), (padded_loss, padded_metrics) = results["real"], results["with padding"]
    assert padded_metrics[TOKENS_METRIC].values == metrics[TOKENS_METRIC].values
    assert padded_metrics[NLL_METRIC].values == pytest.approx(metrics[NLL_METRIC].values, rel=1e-5)
    assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-5)


def test_loss_function_survives_pickling_for_ray():
    fn = partial(exgrpo_actor_loss, config=_actor_config(), aux_coef=0.1)
    assert pickle.loads(pickle.dumps(fn)).keywords["aux_coef"] == 0.1


def test_trainer_mode_runs_as_verls_sync_trainer_and_installs_the_loss():
    config = trainer_config(
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", f"trainer.v1.trainer_mode={TRAINER_MODE}", *AUX
    )
    trainer = object.__new__(ExGRPOTrainerSync)  # verl's real class; workers replaced by recorders
    trainer.config, trainer.trainer_mode, trainer._add_prompts_to_generate = config, TRAINER_MODE, lambda n: n
    buffer = trainer._build_replay_buffer()
    assert trainer.trainer_mode == "sync" and type(buffer).__name__ == "ReplayBuffer"

    installed = []
    trainer.actor_rollout_wg = SimpleNamespace(set_loss_fn=installed.append)
    trainer.checkpoint_manager = SimpleNamespace(update_weights=lambda step: None)
    trainer.global_steps = 0
    trainer.on_init_end()
    assert len(installed) == 1 and installed[0].keywords["aux_coef"] == 0.5
    assert installed[0].func is exgrpo_actor_loss


def test_aux_needs_the_exgrpo_trainer_mode():
    settings = ExGRPOSettings(aux_sft_coef=0.1)
    with pytest.raises(ValueError, match="trainer.v1.trainer_mode=exgrpo_sync"):
        _require_aux_trainer(settings, trainer_config())
    with pytest.raises(ValueError, match="trainer.use_v1=true"):
        _require_aux_trainer(
            settings, trainer_config("trainer.use_v1=false", f"trainer.v1.trainer_mode={TRAINER_MODE}")
        )
    _require_aux_trainer(settings, trainer_config(f"trainer.v1.trainer_mode={TRAINER_MODE}"))
    _require_aux_trainer(ExGRPOSettings(aux_sft_coef=0.0), trainer_config())


def test_the_loss_logs_the_rollout_training_gap_and_trains_the_same():
    """With the old-log-prob pass bypassed, the gap verl would log from it comes from the update's forward."""
    tokenizer, outputs = _dialogue_with_teacher_rows()
    batch, data = _loss_inputs(outputs, tokenizer)
    model = build_tiny_model(tokenizer, "qwen2")
    actor = _actor_config()
    with torch.no_grad():
        policy = response_log_probs(sequence_log_probs(model, batch), batch)
    mask = batch["response_mask"].bool()
    shift = torch.full_like(policy, 0.05)
    shift[~mask] = 3.0  # teacher rows and padding must not enter the figure
    data["rollout_log_probs"] = policy + shift
    loss, metrics = exgrpo_actor_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data, aux_coef=0.5)
    expected = (policy.exp() - (policy + shift).exp()).abs()[mask].mean().item()
    assert metrics[GAP_METRIC].values == [pytest.approx(expected, rel=1e-5)]
    without = data.exclude("rollout_log_probs")
    plain_loss, plain_metrics = exgrpo_actor_loss(
        actor, {"log_probs": sequence_log_probs(model, batch)}, without, aux_coef=0.5
    )
    assert GAP_METRIC not in plain_metrics and loss.item() == plain_loss.item()


def test_the_exgrpo_mode_installs_its_loss_without_the_aux_term_too():
    config = trainer_config(
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        f"trainer.v1.trainer_mode={TRAINER_MODE}",
        "++exgrpo.aux_sft_coef=0",
    )
    trainer = object.__new__(ExGRPOTrainerSync)
    trainer.config, trainer.trainer_mode, trainer._add_prompts_to_generate = config, TRAINER_MODE, lambda n: n
    installed = []
    trainer.actor_rollout_wg = SimpleNamespace(set_loss_fn=installed.append)
    trainer.checkpoint_manager = SimpleNamespace(update_weights=lambda step: None)
    trainer.global_steps = 0
    trainer.on_init_end()
    assert len(installed) == 1 and installed[0].keywords["aux_coef"] == 0


def _update_recorder(*overrides: str):
    """The exgrpo_sync trainer with a worker group that records what verl's ``_update_actor`` sends."""
    config = trainer_config(f"trainer.v1.trainer_mode={TRAINER_MODE}", *AUX, *overrides)
    trainer = object.__new__(ExGRPOTrainerSync)
    trainer.config, trainer.parameter_sync_step, trainer.use_critic, trainer.global_steps = config, 1, False, 1
    trainer.distillation_config = None
    sent = []
    trainer.actor_rollout_wg = SimpleNamespace(
        update_actor=lambda batch: sent.append(dict(batch.extra_info)) or {"metrics": {"mfu": 0.0}}
    )
    return trainer, sent


@pytest.mark.parametrize(
    ("prompts", "mini", "dp", "teacher_rows", "multiple", "updates"),
    [(2, 2, 1, 3, 4, 1), (64, 32, 8, 100, 16, 2), (8, 2, 2, 0, 16, 4)],
)
def test_teacher_rows_join_the_recipes_mini_batches(prompts, mini, dp, teacher_rows, multiple, updates):
    """verl's rule (mini-batches of ppo_mini_batch_size x n rows) would turn teacher-forced rows into
    extra optimiser updates; the exgrpo_sync trainer keeps train_batch_size / ppo_mini_batch_size updates
    and sizes the mini-batch to the step's rows."""
    trainer, sent = _update_recorder(
        f"data.train_batch_size={prompts}", f"actor_rollout_ref.actor.ppo_mini_batch_size={mini}"
    )
    n = trainer.config.actor_rollout_ref.rollout.n
    verls = math.lcm(dp, mini * n)
    assert trainer._get_required_batch_multiple(dp) == multiple
    rows = prompts * n + teacher_rows
    padded = -(-rows // multiple) * multiple
    if (prompts, mini) in ((2, 2), (64, 32)):  # the cpu student's and the GPU recipes' shapes
        assert multiple < verls  # fewer synthetic padding rows than verl's rule adds
    metrics: dict = {}
    trainer._update_actor(KVBatchMeta(keys=[f"k{i}" for i in range(padded)], tags=[{}] * padded), metrics)
    assert [info["mini_batch_size"] for info in sent] == [padded // updates]
    assert sent[0]["global_batch_size"] == padded // updates
    assert metrics["exgrpo/update/mini_batches"] == updates
    assert trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size == mini  # the recipe's value is back
    if teacher_rows == 0:  # without teacher rows: exactly verl's mini-batches
        assert padded // updates == mini * n and padded % verls == 0


def test_a_critic_keeps_verls_mini_batch_rule():
    trainer, sent = _update_recorder()
    trainer.use_critic = True
    trainer.config.critic.ppo_mini_batch_size = 2
    n = trainer.config.actor_rollout_ref.rollout.n
    mini = trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size
    assert trainer._get_required_batch_multiple(1) == math.lcm(2 * n, mini * n)
