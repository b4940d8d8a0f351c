"""verl custom reward file: ``reward.custom_reward_function.path=<this file>`` and ``.name=compute_score``.

From an installed copy use ``pkg://exgrpo_verl.reward_fns.exgrpo_reward`` (or
``python -m exgrpo_verl paths`` for the file path).
"""

from exgrpo_verl.reward import FINAL_RESPONSE_KEY, compute_score

__all__ = ["FINAL_RESPONSE_KEY", "compute_score"]
