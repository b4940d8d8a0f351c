"""A stand-in for verl's LLM server client (vLLM/SGLang cannot run here): scripted replies.

The agent loops only call ``await server_manager.generate(request_id, prompt_ids=…,
sampling_params=…)`` and read a ``TokenOutput``; this class answers with the tokens of a reply
chosen by a Python function of the dialogue so far, honouring ``max_tokens``. It records every
call so tests can check what the loop sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verl.workers.rollout.replica import TokenOutput


@dataclass
class GenerateCall:
    request_id: str
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    reply_ids: list[int]


class ScriptedServer:
    """Replies ``reply(prompt_text)`` (the prompt decoded with special tokens) followed by EOS.

    ``tokenizer`` may be a tokenizer or a path to load one from (a path keeps the object small
    and picklable when it is shipped to a Ray actor). Not a dataclass on purpose: hydra, which
    verl uses to build agent loops, would turn a dataclass argument into a config node.
    """

    def __init__(self, tokenizer: Any, reply: Callable[[str], str], append_eos: bool = True) -> None:
        self.tokenizer = tokenizer
        self.reply = reply
        self.append_eos = append_eos
        self.calls: list[GenerateCall] = []

    def _tokenizer(self) -> Any:
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        tokenizer = self._tokenizer()
        text = tokenizer.decode(prompt_ids, skip_special_tokens=False)
        reply_ids = tokenizer.encode(self.reply(text), add_special_tokens=False)
        if self.append_eos:
            reply_ids.append(tokenizer.eos_token_id)
        limit = sampling_params.get("max_tokens")
        if limit is not None:
            reply_ids = reply_ids[: int(limit)]
        self.calls.append(GenerateCall(request_id, list(prompt_ids), dict(sampling_params), reply_ids))
        log_probs = [-0.5] * len(reply_ids) if sampling_params.get("logprobs") else None
        return TokenOutput(token_ids=reply_ids, log_probs=log_probs, stop_reason="completed")


@dataclass(frozen=True)
class AnswerAfterProbes:
    """A scripted student (picklable, for Ray actors): it answers a probe with ``probe_reply`` and
    the question (recognised by ``question_marker``) with ``right`` once the dialogue holds at
    least ``min_probes`` probe answers, else with ``wrong``."""

    question_marker: str
    right: str
    wrong: str
    min_probes: int = 2
    probe_reply: str = "Let me think about that."

    def __call__(self, prompt: str) -> str:
        if self.question_marker not in prompt:
            return self.probe_reply
        return self.right if prompt.count(self.probe_reply) >= self.min_probes else self.wrong
