"""The hf rollout backend: verl's sampling parameters honoured by the batched generator, the server's
request batching and weight loading, the trainer-side adapter shipping weights through Ray, and the
registrations verl looks the backend up by."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from exgrpo_verl.local.hf_generation import (
    GenerationRequest,
    HFGenerator,
    Sampling,
    parse_sampling_params,
)
from exgrpo_verl.testing import build_tiny_model, build_tokenizer

PROMPT = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("qwen2")


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, "qwen2", seed=3).eval()


@pytest.fixture
def generator(model, tokenizer):
    return HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)


def prompt_ids(tokenizer, text: str = PROMPT) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def next_token_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def first_tokens(generator, ids, n: int, **sampling) -> list[int]:
    request = GenerationRequest(ids, 1, Sampling(**sampling, ignore_eos=True))
    return [r.token_ids[0] for r in generator.generate([request] * n)]


# --- verl's sampling_params -> a request -------------------------------------------------------------
def test_parse_maps_verl_conventions():
    request = parse_sampling_params(
        [1, 2, 3],
        {"temperature": 0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True, "max_tokens": 5},
        response_length=64,
        max_model_len=128,
    )
    assert request.max_tokens == 5 and request.logprobs
    assert request.sampling.greedy and request.sampling.top_k == 0  # verl's -1 is transformers' 0 (off)


def test_parse_default_budget_and_clamps():
    parse = parse_sampling_params
    assert parse([1] * 10, {}, response_length=64, max_model_len=40).max_tokens == 30  # what is left of the window
    assert parse([1] * 10, {}, response_length=8, max_model_len=40).max_tokens == 8
    assert parse([1] * 10, {"max_tokens": 100}, response_length=8, max_model_len=40).max_tokens == 30
    assert parse([1] * 10, {"max_tokens": 0}, response_length=8, max_model_len=40).max_tokens == 1
    assert parse([1], {"top_k": None, "stop_token_ids": [7, 9]}, response_length=8, max_model_len=40).sampling == (
        Sampling(top_k=0, stop_token_ids=(7, 9))
    )
    with pytest.raises(ValueError, match="leaves no room"):
        parse([1] * 40, {}, response_length=8, max_model_len=40)
    with pytest.raises(ValueError, match="best_of"):
        parse([1], {"best_of": 2}, response_length=8, max_model_len=40)


# --- each sampling parameter, against the model's own logits ------------------------------------------
def test_greedy_is_argmax_and_repeatable(generator, model, tokenizer):
    ids = prompt_ids(tokenizer)
    request = GenerationRequest(ids, 6, Sampling(temperature=0, ignore_eos=True))
    first, second = generator.generate([request])[0], generator.generate([request])[0]
    assert first.token_ids == second.token_ids and len(first.token_ids) == 6
    context = list(ids)
    for token in first.token_ids:
        assert token == int(next_token_logits(model, context).argmax())
        context.append(token)


def test_top_k_minus_one_samples_the_whole_distribution(generator, model, tokenizer):
    # a checkpoint's generation_config (here top_k=1) and transformers' default top_k=50 must not apply
    model.generation_config.top_k = 1
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    torch.manual_seed(0)
    draws = first_tokens(generator, prompt_ids(tokenizer), 400, temperature=1.0, top_k=0)
    top50 = set(next_token_logits(model, prompt_ids(tokenizer)).topk(50).indices.tolist())
    assert len(set(draws)) > 60
    assert any(token not in top50 for token in draws)


def test_top_k_keeps_only_the_k_most_likely(generator, model, tokenizer):
    torch.manual_seed(0)
    draws = first_tokens(generator, prompt_ids(tokenizer), 200, temperature=1.0, top_k=3)
    allowed = set(next_token_logits(model, prompt_ids(tokenizer)).topk(3).indices.tolist())
    assert set(draws) <= allowed and len(set(draws)) > 1


def test_top_p_keeps_the_nucleus(generator, model, tokenizer):
    probs = torch.softmax(next_token_logits(model, prompt_ids(tokenizer)), -1)
    ordered, order = probs.sort(descending=True)
    nucleus = set(order[: int((ordered.cumsum(0) < 0.1).sum()) + 1].tolist())
    torch.manual_seed(0)
    draws = first_tokens(generator, prompt_ids(tokenizer), 300, temperature=1.0, top_p=0.1)
    assert set(draws) <= nucleus and len(set(draws)) > 1


def test_temperature_sharpens_the_distribution(generator, tokenizer):
    torch.manual_seed(0)
    hot = Counter(first_tokens(generator, prompt_ids(tokenizer), 300, temperature=1.0))
    cold = Counter(first_tokens(generator, prompt_ids(tokenizer), 300, temperature=0.05))
    assert len(cold) < len(hot) / 4


def test_max_tokens_is_per_request_in_one_batch(generator, tokenizer):
    ids = prompt_ids(tokenizer)
    requests = [GenerationRequest(ids, budget, Sampling(ignore_eos=True)) for budget in (3, 7, 1)]
    results = generator.generate(requests)
    assert [len(r.token_ids) for r in results] == [3, 7, 1]
    assert {r.finish_reason for r in results} == {"length"}


def test_stop_token_ids_end_the_answer_with_the_stop_token(generator, tokenizer):
    ids = prompt_ids(tokenizer)
    greedy = generator.generate([GenerationRequest(ids, 8, Sampling(temperature=0, ignore_eos=True))])[0].token_ids
    stop = greedy[3]
    stopped = generator.generate([GenerationRequest(ids, 8, Sampling(temperature=0, stop_token_ids=(stop,)))])[0]
    cut = greedy.index(stop) + 1
    assert stopped.token_ids == greedy[:cut] and stopped.finish_reason == "stop"


def test_eos_stops_unless_ignore_eos(model, tokenizer):
    ids = prompt_ids(tokenizer)
    probe = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    greedy = probe.generate([GenerationRequest(ids, 8, Sampling(temperature=0, ignore_eos=True))])[0].token_ids
    as_eos = HFGenerator(model, [greedy[2]], tokenizer.pad_token_id)  # the model's EOS: its third greedy token
    first_stop = greedy.index(greedy[2]) + 1
    assert as_eos.generate([GenerationRequest(ids, 8, Sampling(temperature=0))])[0].token_ids == greedy[:first_stop]
    ignored = as_eos.generate([GenerationRequest(ids, 8, Sampling(temperature=0, ignore_eos=True))])[0]
    assert ignored.token_ids == greedy


def test_repetition_penalty_changes_greedy_choices(generator, tokenizer):
    ids = prompt_ids(tokenizer)
    plain = generator.generate([GenerationRequest(ids, 12, Sampling(temperature=0, ignore_eos=True))])[0].token_ids
    penalised = generator.generate(
        [GenerationRequest(ids, 12, Sampling(temperature=0, repetition_penalty=1e4, ignore_eos=True))]
    )[0].token_ids
    assert penalised != plain
    assert not set(penalised) & set(ids) and len(set(penalised)) == len(penalised)  # nothing seen is chosen


def test_log_probs_match_a_full_forward_in_a_padded_batch(generator, model, tokenizer):
    short, long = prompt_ids(tokenizer, PROMPT), prompt_ids(tokenizer, PROMPT.replace("2 + 3", "20 + 30 + 40"))
    torch.manual_seed(1)
    sampling = Sampling(temperature=0.7, ignore_eos=True)
    results = generator.generate([GenerationRequest(p, 5, sampling, logprobs=True) for p in (short, long)])
    for ids, result in zip((short, long), results, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([ids + result.token_ids])).logits[0, len(ids) - 1 : -1].float()
        expected = torch.log_softmax(logits / 0.7, -1).gather(1, torch.tensor(result.token_ids)[:, None]).squeeze(1)
        assert result.log_probs == pytest.approx(expected.tolist(), abs=1e-4)
    without = generator.generate([GenerationRequest(short, 3, sampling)])[0]
    assert without.log_probs is None


def test_requests_with_other_settings_are_answered_in_order(generator, tokenizer):
    ids = prompt_ids(tokenizer)
    requests = [
        GenerationRequest(ids, 2, Sampling(temperature=0, ignore_eos=True)),
        GenerationRequest(ids, 4, Sampling(temperature=1.0, ignore_eos=True)),
        GenerationRequest(ids, 3, Sampling(temperature=0, ignore_eos=True)),
    ]
    assert [len(r.token_ids) for r in generator.generate(requests)] == [2, 4, 3]


# --- the server: batching, TokenOutput, weights ----------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path_factory):
    from exgrpo_verl.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny"), "qwen2"))


def rollout_config(**overrides):
    values = dict(
        dtype="float32",
        max_model_len=None,
        prompt_length=256,
        response_length=64,
        max_num_seqs=64,
        seed=0,
        engine_kwargs={},
    )
    return SimpleNamespace(**{**values, **overrides})


def make_server(model_dir, **config):
    from exgrpo_verl.local.hf_rollout import HFRolloutServer

    return HFRolloutServer(rollout_config(**config), SimpleNamespace(path=model_dir), replica_rank=0, device="cpu")


async def test_server_batches_concurrent_requests(model_dir, tokenizer):
    server = make_server(model_dir)
    sessions = []
    original = server.generator.serve

    def serve(sampling, first, deliver, take=None):
        sessions.append(len(first))
        return original(sampling, first, deliver, take)

    server.generator.serve = serve
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "max_tokens": 4}
    outputs = await asyncio.gather(
        *[server.generate(f"r{i}", prompt_ids=prompt_ids(tokenizer), sampling_params=dict(params)) for i in range(8)]
    )
    assert sum(sessions) == 8 and len(sessions) <= 2  # not one batch per request
    for output in outputs:
        assert 1 <= len(output.token_ids) <= 4 and len(output.log_probs) == len(output.token_ids)
        assert output.stop_reason == "completed"
        assert isinstance(output.extra_fields["global_steps"], int)  # verl casts it with numpy


async def test_a_request_that_arrives_while_a_batch_runs_joins_it_and_is_answered_when_it_ends(
    model_dir, tokenizer, tmp_path
):
    stats = tmp_path / "hf_rollout.jsonl"
    server = make_server(model_dir, engine_kwargs={"hf": {"stats_file": str(stats)}})
    forward = server.generator.model.forward

    @functools.wraps(forward)
    def slow_forward(*args, **kwargs):  # 10 ms a step: the long request decodes for over 0.6 s
        time.sleep(0.01)
        return forward(*args, **kwargs)

    server.generator.model.forward = slow_forward
    ids = prompt_ids(tokenizer)
    params = {"temperature": 1.0, "ignore_eos": True, "logprobs": True}
    long = asyncio.create_task(server.generate("long", prompt_ids=ids, sampling_params={**params, "max_tokens": 60}))
    await asyncio.sleep(0.3)  # past the batching window: the long request is decoding
    late = await server.generate("late", prompt_ids=ids + ids[:5], sampling_params={**params, "max_tokens": 3})
    assert len(late.token_ids) == 3 and not long.done()  # answered the step it ended
    assert len((await long).token_ids) == 60
    calls = await recorded_batches(stats, requests=2)
    assert [c["requests"] for c in calls] == [2] and calls[0]["generated_tokens"] == 63


async def test_server_loads_weights_and_rejects_unknown_names(model_dir, tokenizer):
    server = make_server(model_dir)
    ids = prompt_ids(tokenizer)
    greedy = {"temperature": 0, "max_tokens": 6, "ignore_eos": True}
    before = (await server.generate("a", prompt_ids=ids, sampling_params=dict(greedy))).token_ids
    weights = {name: torch.randn_like(p) for name, p in server.generator.model.named_parameters()}
    assert await server.load_weights(weights) == len(weights)
    after = (await server.generate("b", prompt_ids=ids, sampling_params=dict(greedy))).token_ids
    assert after != before
    with pytest.raises(KeyError, match="not_a_weight"):
        await server.load_weights({"not_a_weight": torch.zeros(1)})
    server.set_global_steps(3)
    output = await server.generate("c", prompt_ids=ids, sampling_params=dict(greedy))
    assert output.extra_fields["global_steps"] == 3


async def recorded_batches(stats, *, requests: int, timeout_s: float = 10.0) -> list[dict]:
    """The stats file's lines once they account for ``requests`` requests: a batch's line is written when
    it ends, after the last answer was handed back."""
    deadline = time.monotonic() + timeout_s
    while True:
        calls = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
        if sum(c["requests"] for c in calls) >= requests or time.monotonic() > deadline:
            return calls
        await asyncio.sleep(0.01)


async def test_server_records_each_generate_call(model_dir, tokenizer, tmp_path):
    stats = tmp_path / "hf_rollout.jsonl"
    server = make_server(model_dir, engine_kwargs={"hf": {"stats_file": str(stats)}})
    params = {"temperature": 1.0, "max_tokens": 2, "ignore_eos": True}
    ids = prompt_ids(tokenizer)
    await asyncio.gather(*[server.generate(f"r{i}", prompt_ids=ids, sampling_params=dict(params)) for i in range(3)])
    calls = await recorded_batches(stats, requests=3)
    assert sum(c["requests"] for c in calls) == 3 and sum(c["generated_tokens"] for c in calls) == 6
    assert sum(c["prompt_tokens"] for c in calls) == 3 * len(ids)
    assert all(c["seconds"] > 0 and c["global_steps"] == 0 for c in calls)
    assert sum(c["steps"] for c in calls) >= 2 and all(c["threads"] == torch.get_num_threads() for c in calls)


def test_unknown_engine_kwargs_are_refused():
    from exgrpo_verl.local.hf_rollout import hf_engine_kwargs

    assert hf_engine_kwargs(SimpleNamespace(engine_kwargs={"vllm": {"x": 1}})) == {}
    with pytest.raises(ValueError, match=r"unknown \['stat_file'\]"):
        hf_engine_kwargs(SimpleNamespace(engine_kwargs={"hf": {"stat_file": "x"}}))


async def test_server_refuses_multimodal_input_and_partial_rollout(model_dir, tokenizer):
    from exgrpo_verl.local.hf_rollout import UnsupportedRolloutMode

    server = make_server(model_dir)
    with pytest.raises(ValueError, match="image_data"):
        await server.generate("x", prompt_ids=[1, 2], sampling_params={}, image_data=["img"])
    await server.generate("y", prompt_ids=[1, 2], sampling_params={"max_tokens": 1}, image_data=None)
    with pytest.raises(UnsupportedRolloutMode, match="asynchronous trainer modes"):
        await server.abort_all_requests()


# --- registrations -----------------------------------------------------------------------------------------
def test_verl_finds_the_backend_by_name():
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    from exgrpo_verl.local.hf_rollout import HFRolloutReplica, HFServerAdapter

    assert get_rollout_class("hf", "async") is HFServerAdapter
    assert get_rollout_replica_class("hf") is HFRolloutReplica


# --- the trainer-side adapter and the replica, through Ray ------------------------------------------------
def verl_rollout_config(**overrides):
    from verl.utils.config import omega_conf_to_dataclass

    from exgrpo_verl.testing.verl_config import compose_trainer_config

    config = compose_trainer_config(
        [
            "actor_rollout_ref.rollout.name=hf",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
            "actor_rollout_ref.rollout.dtype=float32",
            "actor_rollout_ref.rollout.response_length=64",
            *[f"actor_rollout_ref.rollout.{key}={value}" for key, value in overrides.items()],
        ]
    )
    return omega_conf_to_dataclass(config.actor_rollout_ref.rollout)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


async def test_adapter_ships_the_actors_weights_to_its_server(ray_cluster, model_dir, tokenizer, monkeypatch):
    import ray

    from exgrpo_verl.local.hf_rollout import HFRolloutServer, HFServerAdapter, server_actor_name

    config = verl_rollout_config(**{"checkpoint_engine.update_weights_bucket_megabytes": 0})  # one tensor a bucket
    server = (
        ray.remote(HFRolloutServer)
        .options(name=server_actor_name(0))
        .remote(config, SimpleNamespace(path=model_dir), 0, "cpu")
    )
    monkeypatch.setenv("RANK", "0")
    adapter = HFServerAdapter(config, SimpleNamespace(path=model_dir), device_mesh=None)
    trained = build_tiny_model(tokenizer, "qwen2", seed=11)  # "the actor after a step": other weights
    await adapter.update_weights(iter(trained.state_dict().items()), global_steps=5)

    ids = prompt_ids(tokenizer)
    greedy = {"temperature": 0, "max_tokens": 6, "ignore_eos": True}
    output = await server.generate.remote("a", prompt_ids=ids, sampling_params=greedy)
    expected = HFGenerator(trained, [tokenizer.eos_token_id], tokenizer.pad_token_id).generate(
        [GenerationRequest(ids, 6, Sampling(temperature=0, ignore_eos=True))]
    )[0]
    assert output.token_ids == expected.token_ids and output.extra_fields["global_steps"] == 5
    with pytest.raises(Exception, match="weight transfer format"):
        await adapter.update_weights(iter([]), wire_format="delta_flush")
    ray.kill(server)


async def test_replica_refuses_what_the_hf_rollout_cannot_serve():
    from verl.workers.rollout.replica import RolloutMode

    from exgrpo_verl.local.hf_rollout import HFRolloutReplica, UnsupportedRolloutMode

    replica = HFRolloutReplica(0, verl_rollout_config(), SimpleNamespace(path="m"), gpus_per_node=1)
    replica.rollout_mode = RolloutMode.STANDALONE  # what verl's separate_async trainer asks for
    with pytest.raises(UnsupportedRolloutMode, match="synchronous trainer "):
        await replica.launch_servers()
    with pytest.raises(UnsupportedRolloutMode):
        replica.get_ray_class_with_init_args()
    wide = HFRolloutReplica(0, verl_rollout_config(tensor_model_parallel_size=2), SimpleNamespace(path="m"), 2)
    wide.rollout_mode = RolloutMode.HYBRID
    with pytest.raises(ValueError, match=r"tensor_model_parallel_size=1 \(got 2\)"):
        await wide.launch_servers()
