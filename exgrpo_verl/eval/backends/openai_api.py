"""Any OpenAI-compatible chat endpoint (``vllm serve``, SGLang, TGI, hosted APIs) via the
``openai`` client. One request per answer, several in flight, each stored as soon as it returns."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from exgrpo_verl.eval.backends.base import Backend, Completion, GenRequest, Sampling
from exgrpo_verl.eval.errors import EvalError, ModelNotFoundError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _client(base_url: str | None, api_key: str | None, timeout_s: float, max_retries: int) -> Any:
    from openai import OpenAI

    return OpenAI(
        base_url=base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
        api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
        timeout=timeout_s,
        max_retries=max_retries,
    )


class OpenAIBackend(Backend):
    name = "openai"
    requires = "openai"
    extra = "openai"
    default_batch_size = 8  # requests in flight

    def __init__(
        self,
        model: str,
        *,
        batch_size: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        request_timeout_s: float = 600.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self.concurrency = batch_size or self.default_batch_size
        self.client = _client(base_url, api_key, request_timeout_s, max_retries)

    @classmethod
    def check_model(cls, model: str, options: Mapping[str, Any]) -> None:
        """The endpoint must answer, and must serve ``model`` when it lists its models (servers
        without a model list are taken at their word)."""
        import openai

        client = _client(options.get("base_url"), options.get("api_key"), 30.0, 0)
        try:
            served = [entry.id for entry in client.models.list()]
        except openai.APIConnectionError as error:
            raise EvalError(f"cannot reach the OpenAI-compatible endpoint at {client.base_url}: {error}") from error
        except openai.APIStatusError:
            return
        if served and model not in served:
            raise ModelNotFoundError(
                f"the endpoint at {client.base_url} does not serve model {model!r}; it serves: {', '.join(served)}"
            )

    def generate(self, requests: Sequence[GenRequest], sampling: Sampling) -> Iterator[tuple[int, Completion]]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="eval-openai")
        try:
            futures = {pool.submit(self._complete, request, sampling): index for index, request in enumerate(requests)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _complete(self, request: GenRequest, sampling: Sampling) -> Completion:
        import openai

        kwargs: dict[str, Any] = (
            {"temperature": 0.0}
            if sampling.greedy
            else {
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "seed": sampling.seed + request.sample,
            }
        )
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[dict(m) for m in request.item.messages],
                max_tokens=sampling.max_tokens,
                n=1,
                **kwargs,
            )
        except openai.OpenAIError as error:
            dataset, item_id, sample = request.key
            raise EvalError(f"request for {dataset} id {item_id} sample {sample} failed: {error}") from error
        choice = response.choices[0]
        return Completion(choice.message.content or "", choice.finish_reason or "stop")
