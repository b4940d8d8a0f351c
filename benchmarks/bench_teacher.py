"""Teacher-client throughput: N requests with server latency L at concurrency C, against the ideal N·L/C.

The OpenAI-compatible stub runs in its own process (so its threads do not compete with the client
for the GIL) and sleeps L seconds before every answer. Every request is distinct and goes through
the full client path: cache lookup, HTTP, JSON, commit to the SQLite cache. Prints the achieved
time, the ideal N·L/C, and the efficiency ideal/achieved (goal >= 90%).

    python benchmarks/bench_teacher.py [--n 600] [--latency 0.25] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exgrpo_verl.probes.cache import CompletionCache
from exgrpo_verl.probes.teacher import ChatClient, EndpointConfig


async def run(base_url: str, n: int, concurrency: int, cache_path: Path) -> tuple[float, dict]:
    config = EndpointConfig(base_url, "bench", concurrency=concurrency, timeout_s=60.0)
    cache = CompletionCache(cache_path)
    async with ChatClient(config, cache) as client:
        # Warm the connection pool so the timing measures steady state, not TCP handshakes.
        await asyncio.gather(*(client.complete([{"role": "user", "content": f"warm {i}"}]) for i in range(concurrency)))
        start = time.perf_counter()
        answers = await asyncio.gather(
            *(client.complete([{"role": "user", "content": f"question {i}"}]) for i in range(n))
        )
        elapsed = time.perf_counter() - start
        counts = client.counts.as_dict()
    cache.close()
    assert all(answer is not None for answer in answers), counts
    return elapsed, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="requests")
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per answer (L)")
    parser.add_argument("--concurrency", type=int, default=50, help="client concurrency (C)")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "exgrpo_verl.testing.openai_stub", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise RuntimeError(f"stub server did not start: {ready}")
        base_url = f"http://127.0.0.1:{ready[1]}/v1"
        with tempfile.TemporaryDirectory() as scratch:
            elapsed, counts = asyncio.run(run(base_url, args.n, args.concurrency, Path(scratch) / "cache.sqlite"))
    finally:
        server.terminate()
        server.wait(timeout=10)

    ideal = args.n * args.latency / args.concurrency
    efficiency = ideal / elapsed
    print(f"requests N={args.n}  latency L={args.latency}s  concurrency C={args.concurrency}")
    print(f"client counts: {counts}")
    print(f"achieved {elapsed:.3f}s  ideal N*L/C {ideal:.3f}s  efficiency {efficiency:.1%}  (goal >= 90%)")
    return 0 if efficiency >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
