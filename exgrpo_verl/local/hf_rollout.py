"""``actor_rollout_ref.rollout.name=hf``: verl's rollout served by transformers instead of vLLM/SGLang.

Three pieces, mirroring verl's own backends:

- :class:`HFRolloutServer`, a Ray actor holding a copy of the policy. Agent loops call its
  ``generate(request_id, prompt_ids=…, sampling_params=…) -> TokenOutput`` concurrently; requests
  that arrive together are batched into padded decoding loops (:mod:`.hf_server`).
- :class:`HFRolloutReplica`, the ``RolloutReplica`` verl's LLM server manager launches: one server
  per replica, on the node (and GPU) of the trainer worker it shares.
- :class:`HFServerAdapter`, the ``BaseRollout`` in the trainer worker: after every step verl hands it
  the actor's full Hugging Face-named tensors, which it ships to the server in buckets.

It runs colocated with the trainer (verl's hybrid mode: the sync trainers), on the CPU or one GPU
per replica, with rollout tensor/pipeline/data parallel size 1. The sleep/wake/KV-cache calls verl
makes around weight syncs are no-ops: the server keeps its weights, and drops the keys/values it keeps
for dialogues' next turns whenever new weights arrive.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica

from exgrpo_verl.local import BACKEND_NAME
from exgrpo_verl.local.hf_server import HFGenerateServer, load_model, torch_dtype
from exgrpo_verl.local.torch_thread import TorchThread


def server_actor_name(replica_rank: int) -> str:
    return f"{BACKEND_NAME}_rollout_server_{replica_rank}"


class UnsupportedRolloutMode(RuntimeError):
    """The hf rollout only runs colocated with the trainer (verl's sync trainers)."""


def _unsupported(what: str) -> UnsupportedRolloutMode:
    return UnsupportedRolloutMode(
        f"the hf rollout does not support {what}: it serves verl's synchronous trainer "
        "(trainer.v1.trainer_mode=sync or exgrpo_sync) with the rollout colocated with the actor; "
        "use rollout.name=vllm or sglang for the asynchronous trainer modes"
    )


def _check_layout(config: Any) -> None:
    sizes = {
        "tensor_model_parallel_size": config.tensor_model_parallel_size,
        "data_parallel_size": config.data_parallel_size,
        "pipeline_model_parallel_size": config.pipeline_model_parallel_size,
    }
    wrong = {key: value for key, value in sizes.items() if value != 1}
    if wrong:
        settings = ", ".join(f"actor_rollout_ref.rollout.{key}=1 (got {value})" for key, value in wrong.items())
        raise ValueError(f"the hf rollout runs one model copy per trainer rank: it needs {settings}")


ENGINE_KWARGS = ("stats_file", "kv_cache_tokens", "attn_implementation")


def hf_engine_kwargs(config: Any) -> dict[str, Any]:
    """``actor_rollout_ref.rollout.engine_kwargs.hf``: the backend's own settings, as vLLM/SGLang have theirs."""
    kwargs = dict((getattr(config, "engine_kwargs", None) or {}).get(BACKEND_NAME) or {})
    unknown = sorted(set(kwargs) - set(ENGINE_KWARGS))
    if unknown:
        raise ValueError(f"actor_rollout_ref.rollout.engine_kwargs.hf: unknown {unknown}; known: {list(ENGINE_KWARGS)}")
    return kwargs


class HFRolloutServer(HFGenerateServer):
    """The Ray actor behind one hf replica: the batching server plus verl's lifecycle calls."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int, device: str) -> None:
        torch.manual_seed(int(config.seed) + replica_rank)
        engine_kwargs = hf_engine_kwargs(config)
        thread = TorchThread()
        model, tokenizer = thread.call(
            load_model,
            getattr(model_config, "local_path", None) or model_config.path,
            dtype=config.dtype,
            device=device,
            trust_remote_code=bool(getattr(model_config, "trust_remote_code", False)),
            attn_implementation=engine_kwargs.pop("attn_implementation", None),
        )
        super().__init__(
            model,
            tokenizer,
            response_length=config.response_length,
            max_model_len=config.max_model_len or config.prompt_length + config.response_length,
            max_batch=config.max_num_seqs,
            torch_thread=thread,
            **engine_kwargs,
        )
        self.replica_rank = replica_rank

    def ready(self) -> bool:
        return True

    # --- verl's lifecycle calls: nothing to free or restore -------------------------------------------
    async def sleep(self) -> None:
        return None

    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        self.generator.kv_cache.clear()

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        # Only verl's asynchronous trainers abort in-flight requests (partial rollout).
        raise _unsupported("aborting requests (partial rollout in an asynchronous trainer mode)")


class HFRolloutReplica(RolloutReplica):
    """One hf server per replica, next to the trainer worker whose weights it mirrors."""

    def get_ray_class_with_init_args(self):
        raise _unsupported("a standalone or colocated rollout worker group")

    async def launch_servers(self) -> None:
        if self.rollout_mode != RolloutMode.HYBRID:
            raise _unsupported(f"rollout mode {self.rollout_mode.value!r}")
        _check_layout(self.config)
        worker = self.workers[0]
        node_id, gpu_ids = await worker.__ray_call__.remote(
            lambda self: (ray.get_runtime_context().get_node_id(), ray.get_runtime_context().get_accelerator_ids())
        )
        from verl.utils.device import get_device_name

        device = "cuda" if get_device_name() == "cuda" else "cpu"
        env_vars = {}
        if device == "cuda":
            # share the worker's GPU: the server holds no Ray GPU of its own
            env_vars = {
                "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids.get("GPU", [])),
                "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1",
            }
        name = server_actor_name(self.replica_rank)
        server = (
            ray.remote(HFRolloutServer)
            .options(
                name=name,
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
                runtime_env={"env_vars": env_vars},
                max_concurrency=self.max_concurrency,
                num_cpus=0,
            )
            .remote(self.config, self.model_config, self.replica_rank, device)
        )
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = name


class HFServerAdapter(BaseRollout):
    """The trainer-side half: ships the actor's weights to its replica's server after each step."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1) -> None:
        super().__init__(config, model_config, device_mesh)
        _check_layout(self.config)
        rank = int(os.environ.get("RANK", 0))
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self.is_leader_rank = True
        self.bucket_bytes = int(self.config.checkpoint_engine.update_weights_bucket_megabytes) << 20
        self._server: Any = None

    def _server_handle(self) -> Any:
        if self._server is None:  # the server starts after the trainer worker
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    @torch.no_grad()
    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        global_steps: int | None = None,
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise _unsupported(f"weight transfer format {wire_format!r}")
        if peft_config is not None:
            raise ValueError("the hf rollout takes merged weights: set actor_rollout_ref.model.lora.merge=true")
        server = self._server_handle()
        # the server holds its copy in the rollout's dtype: convert here, and ship half the bytes of fp32
        dtype = torch_dtype(self.config.dtype)
        bucket: dict[str, torch.Tensor] = {}
        size = 0
        sent = 0
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            wire = dtype if full.is_floating_point() else full.dtype
            bucket[name] = full.detach().to("cpu", dtype=wire, copy=True)
            size += bucket[name].numel() * bucket[name].element_size()
            if size >= self.bucket_bytes:
                sent += await server.load_weights.remote(bucket)
                bucket, size = {}, 0
        if bucket:
            sent += await server.load_weights.remote(bucket)
        if sent == 0:
            raise RuntimeError("the actor sent no weights to the hf rollout")
        await server.set_global_steps.remote(int(global_steps or 0))
