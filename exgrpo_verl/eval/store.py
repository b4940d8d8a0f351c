"""The generations file: append-only jsonl, one line per answer, keyed by (dataset, id, sample).

It is both the raw output users inspect and what makes a run resumable: every answer is written
and flushed as soon as it exists, so a killed run loses only answers still being generated, and a
rerun asks only for keys the file lacks. The first line records the settings the answers were
made with; a rerun with other settings is refused instead of mixing two runs in one file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exgrpo_verl.eval.backends.base import Completion, GenRequest
from exgrpo_verl.eval.errors import StaleGenerationsError

Key = tuple[str, str, int]
FORMAT = "exgrpo_verl.eval.generations/1"


class GenerationStore:
    def __init__(self, path: str | Path, settings: dict[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        self.settings = settings
        self._answers: dict[Key, dict[str, Any]] = {}
        if overwrite:
            self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._load()
            fresh = not self._answers  # a header alone (a run that stopped before its first answer)
        self._file = self.path.open("w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._write({"format": FORMAT, "settings": settings})

    def _load(self) -> None:
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):
            # The last line was cut off by a kill mid-write: drop it, that answer is asked again.
            raw = raw[: raw.rfind(b"\n") + 1]
            with self.path.open("r+b") as handle:
                handle.truncate(len(raw))
        lines = raw.decode("utf-8").splitlines()
        if not lines:
            return
        header = _parse(lines[0], self.path, 1)
        if header.get("format") != FORMAT:
            raise StaleGenerationsError(f"{self.path} is not an eval generations file (line 1 has no {FORMAT} header)")
        stored = header.get("settings", {})
        if stored != self.settings and any(line.strip() for line in lines[1:]):
            changed = sorted(k for k in set(stored) | set(self.settings) if stored.get(k) != self.settings.get(k))
            details = "; ".join(f"{k}: file {stored.get(k)!r}, now {self.settings.get(k)!r}" for k in changed)
            raise StaleGenerationsError(
                f"{self.path} holds answers made with other settings ({details}); "
                "pass --overwrite to start over, or choose another --out"
            )
        for line_no, line in enumerate(lines[1:], start=2):
            if line.strip():
                answer = _parse(line, self.path, line_no)
                self._answers[(answer["dataset"], answer["id"], int(answer["sample"]))] = answer

    def get(self, key: Key) -> dict[str, Any] | None:
        return self._answers.get(key)

    def __contains__(self, key: Key) -> bool:
        return key in self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def append(self, request: GenRequest, completion: Completion, correct: bool, pred: str) -> dict[str, Any]:
        item = request.item
        answer = {
            "dataset": item.dataset,
            "id": item.id,
            "sample": request.sample,
            "prompt_sha": item.prompt_sha,
            "prompt": [dict(m) for m in item.messages],
            "response": completion.text,
            "finish_reason": completion.finish_reason,
            "gold": item.gold,
            "correct": correct,
            "pred": pred,
        }
        self._write(answer)
        self._answers[request.key] = answer
        return answer

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> GenerationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(line: str, path: Path, line_no: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as error:
        raise StaleGenerationsError(f"{path}:{line_no}: not valid JSON ({error.msg})") from error
    if not isinstance(obj, dict):
        raise StaleGenerationsError(f"{path}:{line_no}: expected a JSON object")
    return obj
