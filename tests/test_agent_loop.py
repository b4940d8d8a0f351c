"""The probe-dialogue agent loop, run in an event loop with a scripted server (and a tiny model)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from exgrpo_verl.local.hf_server import HFGenerateServer
from exgrpo_verl.reward import FINAL_RESPONSE_KEY
from exgrpo_verl.rollout.agent_loop import MissingSessionError, UnflaggedProbesError
from exgrpo_verl.schema import MalformedProbesError
from exgrpo_verl.testing import build_tiny_model, build_tokenizer
from exgrpo_verl.testing.servers import ScriptedServer
from tests.conftest import DEVICES
from tests.rollout_helpers import PROBES, QUESTION, make_loop, make_row, run_dialogues, run_kwargs


def _runs(values):
    """Split a 0/1 mask into (flag, start, stop) runs."""
    runs, start = [], 0
    for flag, group in itertools.groupby(values):
        length = len(list(group))
        runs.append((flag, start, start + length))
        start += length
    return runs


def numbered_replies(final: str = "So he has \\boxed{5} apples."):
    counter = itertools.count()

    def reply(prompt: str) -> str:
        return final if QUESTION in prompt else f"probe reply {next(counter)}"

    return reply


def run(tokenizer, server, row, session_id, style="qwen2", overrides=(), **params):
    return run_dialogues(tokenizer, server, [(row, session_id)], style, overrides, **params)[0]


@pytest.mark.parametrize("style", ["qwen2", "gemma", "llama3"])
def test_response_mask_layout(style):
    tokenizer = build_tokenizer(style)
    server = ScriptedServer(tokenizer, numbered_replies())
    output = run(tokenizer, server, make_row(), 0, style)  # Scenario A: 3 probes

    # the prompt is exactly the chat template's first user turn (a probe) with the generation prompt
    first_probe = output.extra_fields["exgrpo_probe_rules"][0]
    first_text = next(p["question"] for p in PROBES if p["rule"] == first_probe)
    expected_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": first_text}], add_generation_prompt=True, tokenize=False
    )
    assert tokenizer.decode(output.prompt_ids) == expected_prompt

    # mask-1 runs are exactly the tokens the server generated, turn by turn
    runs = _runs(output.response_mask)
    generated = [output.response_ids[a:b] for flag, a, b in runs if flag == 1]
    assert generated == [call.reply_ids for call in server.calls]
    assert len(generated) == 4  # 3 probe answers + the final answer

    # mask-0 runs are the injected user turns, in order: probes 2..k, then the question
    injected = [tokenizer.decode(output.response_ids[a:b]) for flag, a, b in runs if flag == 0]
    rules = output.extra_fields["exgrpo_probe_rules"]
    expected_users = [next(p["question"] for p in PROBES if p["rule"] == r) for r in rules[1:]] + [QUESTION]
    assert len(injected) == len(expected_users)
    for text, user in zip(injected, expected_users, strict=True):
        assert user in text and "probe reply" not in text

    assert output.num_turns == output.extra_fields["exgrpo_num_turns"] == 8
    assert output.extra_fields[FINAL_RESPONSE_KEY] == "So he has \\boxed{5} apples."
    assert output.extra_fields["exgrpo_scenario"] == "full" and output.extra_fields["exgrpo_num_probes"] == 3
    assert not output.extra_fields["exgrpo_truncated"] and not output.extra_fields["exgrpo_no_probes"]


def test_gemma_template_rejects_system_but_dialogue_runs():
    tokenizer = build_tokenizer("gemma")
    with pytest.raises(Exception, match="System role"):
        tokenizer.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)
    output = run(tokenizer, ScriptedServer(tokenizer, numbered_replies()), make_row(), 1, "gemma")
    assert output.extra_fields[FINAL_RESPONSE_KEY].endswith("apples.")


def test_scenarios_are_balanced_and_partial_asks_k_prime():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    outputs = run_dialogues(tokenizer, server, [(make_row(), session) for session in range(4)])
    assert [o.extra_fields["exgrpo_scenario"] for o in outputs] == ["full", "full", "partial", "partial"]
    assert [o.extra_fields["exgrpo_num_probes"] for o in outputs] == [3, 3, 1, 1]
    assert [o.num_turns for o in outputs] == [8, 8, 4, 4]


def test_probe_sampling_is_reproducible():
    tokenizer = build_tokenizer("qwen2")
    first, second = (ScriptedServer(tokenizer, numbered_replies()) for _ in range(2))
    runs = [run_dialogues(tokenizer, server, [(make_row(), s) for s in range(4)]) for server in (first, second)]
    assert [o.extra_fields["exgrpo_probe_rules"] for o in runs[0]] == [
        o.extra_fields["exgrpo_probe_rules"] for o in runs[1]
    ]
    assert [c.prompt_ids for c in first.calls] == [c.prompt_ids for c in second.calls]
    assert runs[0][0].extra_fields["exgrpo_probe_rules"] != runs[0][1].extra_fields["exgrpo_probe_rules"]


def test_per_turn_token_caps_reach_the_server():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    run(tokenizer, server, make_row(), 0)
    assert [c.sampling_params["max_tokens"] for c in server.calls] == [64, 64, 64, 96]
    assert all(c.sampling_params["temperature"] == 1.0 for c in server.calls)


def test_exhausted_budget_stops_cleanly_and_grades_nothing():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, lambda prompt: "x" * 500)  # every answer runs to its cap
    output = run(tokenizer, server, make_row(), 0, overrides=("actor_rollout_ref.rollout.response_length=150",))
    assert output.extra_fields["exgrpo_truncated"] is True
    assert output.extra_fields[FINAL_RESPONSE_KEY] == ""
    assert len(output.response_ids) == len(output.response_mask) <= 150


def test_row_with_fewer_probes_uses_what_it_has():
    tokenizer = build_tokenizer("qwen2")
    output = run(tokenizer, ScriptedServer(tokenizer, numbered_replies()), make_row([PROBES[0], PROBES[2]]), 0)
    assert output.extra_fields["exgrpo_num_probes"] == 2 and output.num_turns == 6


def _flagged_texts(row) -> set[str]:
    return {p["question"] for p in row["extra_info"]["probes"] if p["reveals_answer"]}


@pytest.mark.parametrize("seed", [0, 7])
def test_exclude_never_asks_a_probe_that_reveals_the_answer(seed):
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    rows = [make_row(index=i) for i in range(12)]
    assert _flagged_texts(rows[0]) == {PROBES[1]["question"]}  # "If he ends with 5 ..." states the answer 5
    outputs = run_dialogues(
        tokenizer, server, [(row, s) for row in rows for s in range(4)], overrides=(f"+exgrpo.seed={seed}",)
    )
    prompts = [tokenizer.decode(call.prompt_ids) for call in server.calls]
    assert not any(PROBES[1]["question"] in prompt for prompt in prompts)
    assert all(not any(o.extra_fields["exgrpo_probe_reveals"]) for o in outputs)
    assert all(o.extra_fields["exgrpo_excluded_probes"] == 1 for o in outputs)
    assert {rule for o in outputs for rule in o.extra_fields["exgrpo_probe_rules"]} == {
        p["rule"] for p in PROBES if p["rule"] != "inverse"
    }


def test_allow_asks_revealing_probes_too():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    rows = [make_row(index=i) for i in range(12)]
    jobs = [(row, s) for row in rows for s in range(4)]
    outputs = run_dialogues(tokenizer, server, jobs, overrides=("+exgrpo.revealing_probes=allow",))
    asked = [o for o in outputs if "inverse" in o.extra_fields["exgrpo_probe_rules"]]
    assert asked and all(o.extra_fields["exgrpo_excluded_probes"] == 0 for o in outputs)
    for output in asked:
        position = output.extra_fields["exgrpo_probe_rules"].index("inverse")
        assert output.extra_fields["exgrpo_probe_reveals"][position] is True
    assert any(PROBES[1]["question"] in tokenizer.decode(call.prompt_ids) for call in server.calls)


def test_rows_written_before_the_flag_are_refused_unless_allowed():
    tokenizer = build_tokenizer("qwen2")
    row = make_row(index=5)
    for probe in row["extra_info"]["probes"]:
        del probe["reveals_answer"]
    with pytest.raises(UnflaggedProbesError, match="row 5: .*revealing_probes=allow"):
        run(tokenizer, ScriptedServer(tokenizer, numbered_replies()), row, 0)
    output = run(
        tokenizer, ScriptedServer(tokenizer, numbered_replies()), row, 0, overrides=("+exgrpo.revealing_probes=allow",)
    )
    assert output.extra_fields["exgrpo_num_probes"] == 3


def test_row_without_probes_runs_single_turn():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    output = run(tokenizer, server, make_row([]), 0)
    assert output.extra_fields["exgrpo_no_probes"] is True and output.num_turns == 2
    assert QUESTION in tokenizer.decode(output.prompt_ids)
    assert set(output.response_mask) == {1} and len(server.calls) == 1


def test_malformed_probe_list_names_the_row():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    row = make_row(index=7)
    row["extra_info"]["probes"] = [{"rule": "cause"}]
    with pytest.raises(MalformedProbesError, match=r"row 7: extra_info.probes\[0\].question"):
        run(tokenizer, server, row, 0)
    row["extra_info"]["probes"] = "not a list"
    with pytest.raises(MalformedProbesError, match="row 7"):
        run(tokenizer, server, row, 0)


def test_missing_session_explains_the_manager_setting():
    tokenizer = build_tokenizer("qwen2")
    kwargs = run_kwargs(make_row(), 0)
    del kwargs["session_id"]

    async def main():
        loop = make_loop(tokenizer, ScriptedServer(tokenizer, numbered_replies()))
        await loop.run({}, **kwargs)

    with pytest.raises(
        MissingSessionError, match="agent_loop_manager_class=exgrpo_verl.rollout.ExGRPOAgentLoopManager"
    ):
        asyncio.run(main())


def test_partial_trajectories_can_drop_their_gradient():
    tokenizer = build_tokenizer("qwen2")
    server = ScriptedServer(tokenizer, numbered_replies())
    full, partial = run_dialogues(
        tokenizer, server, [(make_row(), 0), (make_row(), 3)], overrides=("+exgrpo.partial_gradient=false",)
    )
    assert 1 in full.response_mask and set(partial.response_mask) == {0}
    assert partial.extra_fields[FINAL_RESPONSE_KEY]  # still graded: its reward enters the group baseline


def test_logprobs_follow_the_mask():
    tokenizer = build_tokenizer("qwen2")
    output = run(tokenizer, ScriptedServer(tokenizer, numbered_replies()), make_row(), 0, logprobs=True)
    assert len(output.response_logprobs) == len(output.response_mask)
    assert all((lp != 0.0) == bool(m) for lp, m in zip(output.response_logprobs, output.response_mask, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_with_a_tiny_random_model(device):
    """A real transformers model behind the server: arbitrary token streams, same invariants."""
    tokenizer = build_tokenizer("qwen2")
    server = HFGenerateServer(build_tiny_model(tokenizer, "qwen2").to(device), tokenizer, response_length=1024)
    output = run(
        tokenizer, server, make_row(), 0, overrides=("++exgrpo.probe_max_tokens=12", "++exgrpo.final_max_tokens=16")
    )
    assert len(output.response_ids) == len(output.response_mask) > 0
    assert sum(output.response_mask) <= 3 * 12 + 16
    assert output.num_turns == 8
    assert isinstance(output.extra_fields[FINAL_RESPONSE_KEY], str)
