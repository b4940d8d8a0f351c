"""The paper's ablation (Table 3) in one command, against verl's plain GRPO.

``python -m exgrpo_verl ablation`` (:mod:`exgrpo_verl.ablation.cli`) trains each arm
(:mod:`~exgrpo_verl.ablation.arms`) with a stock ``main_ppo`` run of the project's recipes, through
the commands the run scripts print (:mod:`~exgrpo_verl.ablation.commands`), evaluates its last
checkpoint with ``eval`` and tabulates every arm with ``report``.
"""
