"""What every generation backend takes and gives back."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from exgrpo_verl.eval.errors import BackendNotInstalledError
from exgrpo_verl.eval.records import EvalItem


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 is greedy. Sample ``i`` of a question uses seed ``seed + i``
    where the backend supports per-request seeds, so a resumed run draws what an unbroken one would."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def answer_settings(self) -> dict[str, Any]:
        """The settings that change what the model answers (greedy ignores top_p and seed)."""
        if self.greedy:
            return {"temperature": 0.0, "max_tokens": self.max_tokens}
        return self.as_dict()


@dataclass(frozen=True)
class GenRequest:
    """One answer to draw: sample ``sample`` of ``item``."""

    item: EvalItem
    sample: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.item.dataset, self.item.id, self.sample)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop", or "length" when max_tokens cut the answer off


class Backend(ABC):
    """Turns chat prompts into completions. Subclasses import their library in ``__init__`` only,
    so choosing another backend never needs it."""

    name: ClassVar[str]
    requires: ClassVar[str | None] = None  # importable module the backend needs
    extra: ClassVar[str | None] = None  # pip extra of exgrpo_verl that installs it
    default_batch_size: ClassVar[int] = 8

    @classmethod
    def check_installed(cls) -> None:
        if cls.requires and importlib.util.find_spec(cls.requires) is None:
            raise BackendNotInstalledError(
                f"the {cls.name} backend needs the {cls.requires!r} package, which is not installed: "
                f"pip install 'exgrpo_verl[{cls.extra}]'"
            )

    @classmethod
    @abstractmethod
    def check_model(cls, model: str, options: Mapping[str, Any]) -> None:
        """Fail fast (before any dataset is read) when ``model`` cannot be loaded or served."""

    @abstractmethod
    def generate(self, requests: Sequence[GenRequest], sampling: Sampling) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as each answer is ready, in any order."""


def render_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the chat prompt, rendered the way verl renders training prompts: the chat
    template as text, then tokenised without adding special tokens (the template has them)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; eval asks questions as chat turns, like training does")
    text = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
