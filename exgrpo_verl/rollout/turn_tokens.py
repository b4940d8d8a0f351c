"""User-turn tokens for chat templates that reject a system role or require alternating roles.

verl's Continuous Token builder renders an appended user message after a synthetic
[system, user] pair and keeps the token-level suffix. Gemma's template rejects a system role and
requires user/assistant alternation, so that render raises. A probe dialogue only ever appends a
user message after an assistant turn, so the suffix is rendered after a synthetic
[user, assistant] exchange instead: valid for every template and faithful to the real dialogue.
Everything else (initial prompt, assistant merges, model-specific boundary tokens) is verl's own
builder, whichever class verl's factory chose for the model.
"""

from __future__ import annotations

import copy
from typing import Any

_SYNTHETIC_EXCHANGE = (
    {"role": "user", "content": "continuous token synthetic user"},
    {"role": "assistant", "content": "continuous token synthetic assistant"},
)


class _UserTurnAfterAssistant:
    def _tokenize_single_non_tool(
        self, message: dict[str, Any], *, tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = False
    ) -> list[int]:
        if message.get("role") != "user":
            return super()._tokenize_single_non_tool(  # type: ignore[misc]
                message, tools=tools, add_generation_prompt=add_generation_prompt
            )
        return self.render_delta_token_id(  # type: ignore[attr-defined]
            list(_SYNTHETIC_EXCHANGE), [message], add_generation_prompt=add_generation_prompt, tools=tools
        )


_derived: dict[type, type] = {}


def with_alternating_user_turns(builder: Any) -> Any:
    """A copy of verl's builder whose appended user turns render after a user/assistant exchange."""
    base = type(builder)
    derived = _derived.get(base)
    if derived is None:
        derived = _derived[base] = type(f"AlternatingTurns{base.__name__}", (_UserTurnAfterAssistant, base), {})
    adapted = copy.copy(builder)
    adapted.__class__ = derived
    return adapted
