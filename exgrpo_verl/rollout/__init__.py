"""ExGRPO rollout: the probe-dialogue agent loop, scenario assignment, the r_dsu bonus and its verl glue.

Attributes load lazily: the plug-in imports only the agent loop on every ``import verl``, while the
managers (which pull in verl's v1 trainer modules) load when verl asks for them by name.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ProbeDialogueAgentLoop": "exgrpo_verl.rollout.agent_loop",
    "ExGRPOAgentLoopManager": "exgrpo_verl.rollout.managers",
    "ExGRPOSettings": "exgrpo_verl.rollout.settings",
    "exgrpo_replay_buffer": "exgrpo_verl.rollout.v1_metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
