"""A stand-in for verl's LLM server client (vLLM/SGLang cannot run here): scripted replies.

The agent loops only call ``await server_manager.generate(request_id, prompt_ids=…,
sampling_params=…)`` and read a ``TokenOutput``; this class answers with the tokens of a reply
chosen by a Python function of the dialogue so far, honouring ``max_tokens``. It records every
call so tests can check what the loop sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verl.workers.rollout.replica import TokenOutput


@dataclass
class GenerateCall:
    request_id: str
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    reply_ids: list[int]


@dataclass
class ScriptedServer:
    """Replies ``reply(prompt_text)`` (the prompt decoded with special tokens) followed by EOS.

    ``tokenizer`` may be a tokenizer or a path to load one from (a path keeps the object small
    and picklable when it is shipped to a Ray actor).
    """

    tokenizer: Any
    reply: Callable[[str], str]
    append_eos: bool = True
    calls: list[GenerateCall] = field(default_factory=list)

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
