"""One thread for all of a rollout server's torch work.

torch's CPU kernels run on OpenMP (libgomp): each OS thread that starts a parallel region gets its own
team of worker threads. Once a process holds more team threads than it has cores, libgomp stops letting
idle workers spin and puts them to sleep after every parallel region, so each of a decoding step's
hundreds of small kernels pays a futex wake-up. Measured with SmolLM2-135M on 2 cores, 8 rows: 63–67 ms a
decoding step when one thread does all the torch work, 86–112 ms (CPU 125% instead of 199%, a seventh
of it system time) once a second thread has run torch work too. An asyncio server that loads its model in
one thread and generates in ``asyncio.to_thread`` workers is the second case; routing every torch call
through one executor thread is the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class TorchThread:
    """A single worker thread; ``call`` blocks for a result, ``run`` awaits one."""

    def __init__(self, name: str = "torch") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._executor.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))
