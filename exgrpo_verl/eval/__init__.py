"""Single-turn evaluation on the twelve datasets: the training prompt, the reward's checkers,
resumable generation with vLLM / an OpenAI-compatible endpoint / transformers, and reports.

``python -m exgrpo_verl eval`` (:mod:`exgrpo_verl.eval.cli`) and ``python -m exgrpo_verl report``
(:mod:`exgrpo_verl.eval.report`) are the entry points; :func:`runner.generate_missing` and
:func:`runner.summarize` do the work for code that already holds its questions.
"""
