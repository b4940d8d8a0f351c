"""The probe-dialogue agent loop: k (or k') probes as user turns, then the original question.

One trajectory = probe_1 → answer → … → probe_j → answer → question → final answer. The first
user turn is verl's prompt; everything after it is the response, where injected user turns have
response_mask 0 and the student's answers 1. Only the final answer is graded: its text goes to
``extra_info[FINAL_RESPONSE_KEY]`` through the output's ``extra_fields``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op

from exgrpo_verl.reward import FINAL_RESPONSE_KEY
from exgrpo_verl.rollout.scenarios import DialoguePlan, Scenario, plan_dialogue
from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.rollout.turn_tokens import with_alternating_user_turns
from exgrpo_verl.schema import PROBE_AGENT_NAME, parse_probes

logger = logging.getLogger(__name__)

SESSION_KEY = "session_id"
"""A trajectory's index in its uid group: set by verl's v1 worker, by our manager on the legacy path."""
GROUP_SIZE_KEY = "exgrpo_group_size"
"""The group's size, set by our managers (falls back to actor_rollout_ref.rollout.n)."""

# extra_fields written by the loop (they reach the reward function's extra_info and the metrics).
SCENARIO_FIELD = "exgrpo_scenario"
PROBE_RULES_FIELD = "exgrpo_probe_rules"
PROBE_REVEALS_FIELD = "exgrpo_probe_reveals"
"""Per asked probe, whether it is flagged reveals_answer (all False with exgrpo.revealing_probes=exclude)."""
EXCLUDED_PROBES_FIELD = "exgrpo_excluded_probes"
"""How many of the row's probes were not asked because they reveal the answer."""
NUM_PROBES_FIELD = "exgrpo_num_probes"
NUM_TURNS_FIELD = "exgrpo_num_turns"
TRUNCATED_FIELD = "exgrpo_truncated"
NO_PROBES_FIELD = "exgrpo_no_probes"
TEACHER_TOKENS_FIELD = "exgrpo_teacher_tokens"
"""On a teacher-forced row (L_SFT-aux): how many trailing response tokens are the teacher's answer."""
TEACHER_RULE_FIELD = "exgrpo_teacher_rule"
# verl's own fields: the first and last policy version (global step) that generated the trajectory
MIN_STEPS_FIELD = "min_global_steps"
MAX_STEPS_FIELD = "max_global_steps"


class MissingSessionError(RuntimeError):
    """The loop was not told which trajectory of its group it is, so it cannot balance scenarios."""


class UnflaggedProbesError(ValueError):
    """A row's probes carry no reveals_answer flag (written before it existed), so ``exclude`` cannot
    tell which ones give the answer away."""


@register(PROBE_AGENT_NAME)
class ProbeDialogueAgentLoop(AgentLoopBase):
    """ExGRPO rollout: Scenario A (k probes) or B (k' probes) by the trajectory's index in its group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # probe dialogues call no tools
        super().__init__(*args, **kwargs)
        self.settings = ExGRPOSettings.from_trainer_config(self.config)
        self.continuous_token_builder = with_alternating_user_turns(self.continuous_token_builder)
        self.response_length = self.rollout_config.response_length

    def _plan(self, kwargs: dict[str, Any]) -> DialoguePlan:
        extra_info = kwargs.get("extra_info")
        if not isinstance(extra_info, Mapping):
            extra_info = {}
        row = extra_info.get("index", kwargs.get("index", "?"))
        probes = parse_probes(extra_info, row)
        if self.settings.revealing_probes == "exclude" and any(p.get("reveals_answer") is None for p in probes):
            raise UnflaggedProbesError(
                f"row {row}: extra_info.probes carry no reveals_answer flag (the file predates it), so the probes "
                "that give the answer away cannot be left out. Rebuild the RL data with ei-build, or set "
                "exgrpo.revealing_probes=allow to ask every probe."
            )
        session_id = kwargs.get(SESSION_KEY)
        if session_id is None:
            raise MissingSessionError(
                f"row {row}: {PROBE_AGENT_NAME} needs its trajectory's index in the group ({SESSION_KEY}); set "
                "actor_rollout_ref.rollout.agent.agent_loop_manager_class=exgrpo_verl.rollout.ExGRPOAgentLoopManager"
            )
        group_size = int(kwargs.get(GROUP_SIZE_KEY) or self.rollout_config.n)
        question_key = str(extra_info.get("id", row))
        return plan_dialogue(self.settings, probes, question_key, int(session_id), group_size)

    def _teacher_row(
        self, tokens: list[int], mask: list[int], logprobs: list[float] | None, answer: str, rule: str
    ) -> AgentLoopOutput | None:
        """The student's dialogue so far (ending with probe j and the generation prompt) followed by
        the teacher's answer to probe j: a training row for L_SFT-aux. Every response token has
        response_mask 0, so verl's policy-gradient, KL and entropy terms ignore the row; the actor
        loss finds the teacher tokens from ``TEACHER_TOKENS_FIELD``."""
        room = self.response_length - len(mask)
        teacher_ids = self.tokenizer.encode(answer, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        teacher_ids = teacher_ids[:room]
        if not teacher_ids:
            return None
        context = tokens[len(tokens) - len(mask) :] if mask else []
        response_ids = context + teacher_ids
        return AgentLoopOutput(
            prompt_ids=tokens[: len(tokens) - len(mask)],
            response_ids=response_ids,
            response_mask=[0] * len(response_ids),
            response_logprobs=[0.0] * len(response_ids) if logprobs is not None else None,
            num_turns=0,
            metrics={},
            extra_fields={TEACHER_TOKENS_FIELD: len(teacher_ids), TEACHER_RULE_FIELD: rule},
        )

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput | list[AgentLoopOutput]:
        """One dialogue. With ``exgrpo.aux_sft_coef > 0`` and probes that carry a teacher answer,
        returns [teacher-forced rows …, the dialogue] (verl's v1 worker stores every output of a
        trajectory and takes the group's GRPO statistics from the last one)."""
        plan = self._plan(kwargs)
        raw_prompt = list(kwargs["raw_prompt"])
        question, preamble = raw_prompt[-1], raw_prompt[:-1]
        user_turns = [{"role": "user", "content": probe["question"]} for probe in plan.probes] + [question]

        messages = [*preamble, user_turns[0]]
        prompt_ids = await self.ct_build_initial_tokens(messages)
        tokens, mask = list(prompt_ids), []
        logprobs: list[float] | None = [] if sampling_params.get("logprobs") else None
        metrics: dict[str, Any] = {}
        request_id = uuid4().hex
        final_text, finished = "", False
        teacher_rows: list[AgentLoopOutput] = []
        # the policy versions that generated this dialogue, as verl's v1 trainer tracks them per row
        weight_versions: dict[str, Any] = {}

        for turn, user_message in enumerate(user_turns):
            if turn > 0:
                previous = list(messages)
                messages.append(user_message)
                merged, mask, logprobs = await self.ct_merge_context_msg(previous, messages, tokens, mask, logprobs)
                tokens = merged.token_ids
            is_final = turn == len(user_turns) - 1
            answer = None if is_final else plan.probes[turn].get("teacher_answer")
            if answer and self.settings.aux_sft_coef > 0:
                row = self._teacher_row(tokens, mask, logprobs, answer, plan.probes[turn]["rule"])
                if row is not None:
                    teacher_rows.append(row)
            budget = self.response_length - len(mask)
            if budget <= 0:
                break  # the probes used the whole response budget: no final answer
            cap = self.settings.final_max_tokens if is_final else self.settings.probe_max_tokens
            with simple_timer("generate_sequences", metrics):
                output = await self.server_manager.generate(
                    request_id=request_id,
                    prompt_ids=tokens,
                    sampling_params={**sampling_params, "max_tokens": min(cap, budget)},
                )
            merged, mask, logprobs = await self.ct_merge_assistant_token(
                tokens,
                output.token_ids,
                mask,
                logprobs,
                assistant_logprobs=output.log_probs if logprobs is not None else None,
            )
            tokens = merged.token_ids
            weight_versions.setdefault(MIN_STEPS_FIELD, output.extra_fields.get(MIN_STEPS_FIELD))
            weight_versions[MAX_STEPS_FIELD] = output.extra_fields.get(MAX_STEPS_FIELD)
            text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            messages.append({"role": "assistant", "content": text})
            if is_final:
                # A final answer cut off by the response budget (not by its own cap) is unfinished.
                finished = not (budget < cap and len(output.token_ids) >= budget)
                final_text = text if finished else ""

        if plan.scenario is Scenario.PARTIAL and not self.settings.partial_gradient:
            mask = [0] * len(mask)
        response_ids = tokens[len(tokens) - len(mask) :] if mask else []
        dialogue = AgentLoopOutput(
            prompt_ids=tokens[: len(tokens) - len(mask)],
            response_ids=response_ids[: self.response_length],
            response_mask=mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] if logprobs else None,
            num_turns=len(messages),
            metrics=metrics,
            extra_fields={
                FINAL_RESPONSE_KEY: final_text,
                SCENARIO_FIELD: plan.scenario.value,
                PROBE_RULES_FIELD: [probe["rule"] for probe in plan.probes],
                PROBE_REVEALS_FIELD: [bool(probe.get("reveals_answer")) for probe in plan.probes],
                EXCLUDED_PROBES_FIELD: plan.excluded,
                NUM_PROBES_FIELD: len(plan.probes),
                NUM_TURNS_FIELD: len(messages),
                TRUNCATED_FIELD: not finished,
                NO_PROBES_FIELD: plan.available == 0,
                **weight_versions,
            },
        )
        for row in teacher_rows:
            row.extra_fields.update(weight_versions)
        return [*teacher_rows, dialogue] if teacher_rows else dialogue
