"""Reward throughput: our compute_score vs verl's built-in GSM8K scorer on the same 10,000 answers.

Both functions are called the same way, in the same process, over answers in the format verl's
scorer accepts ("#### N" after a chain of thought). Prints both times and the ratio (goal <= 1.5x).

    python benchmarks/bench_rewards.py [--n 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from verl.utils.reward_score.gsm8k import compute_score as verl_gsm8k

from exgrpo_verl.reward import compute_score


def gsm8k_style_answers(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    answers = []
    for _ in range(n):
        steps = " ".join(
            f"She has {rng.randint(1, 99)} apples and buys {rng.randint(1, 99)} more, "
            f"so {rng.randint(1, 99)} + {rng.randint(1, 99)} = {rng.randint(2, 198)}."
            for _ in range(rng.randint(2, 6))
        )
        gold = rng.randint(1, 5000)
        shown = gold if rng.random() < 0.7 else gold + rng.randint(1, 9)
        answers.append((f"Let's think step by step. {steps}\n#### {shown}", str(gold)))
    return answers


def best_time(fn: Callable[[str, str], object], answers: list[tuple[str, str]], repeats: int) -> tuple[float, float]:
    best, total = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        total = 0.0
        for solution, gold in answers:
            total += float(fn(solution, gold))
        best = min(best, time.perf_counter() - start)
    return best, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    answers = gsm8k_style_answers(args.n)

    def ours(solution: str, gold: str) -> float:
        return compute_score("gsm8k", solution, gold)["score"]

    def verl(solution: str, gold: str) -> float:
        return verl_gsm8k(solution, gold)

    verl_s, verl_total = best_time(verl, answers, args.repeats)
    ours_s, ours_total = best_time(ours, answers, args.repeats)
    assert verl_total == ours_total, f"scorers disagree: verl {verl_total} vs ours {ours_total}"
    print(f"answers: {args.n} (correct: {int(ours_total)}); best of {args.repeats} runs")
    print(f"verl gsm8k.compute_score : {verl_s * 1e3:8.1f} ms  ({verl_s / args.n * 1e6:.2f} us/answer)")
    print(f"exgrpo compute_score     : {ours_s * 1e3:8.1f} ms  ({ours_s / args.n * 1e6:.2f} us/answer)")
    print(f"ratio ours/verl          : {ours_s / verl_s:.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
