"""Single-file baselines, each run top to bottom as a script (``python baselines/ppo_continuous_action.py``).

Installed as the package ``meg_gym_baselines`` so that a saved learner run can be loaded by its file's
``load_policy(run_dir)`` (``scripts/evaluate.py`` finds the file from the run's model.json) without importing
files by path. The files do not import each other: code they share is copied on purpose, one algorithm per
file, and each copy carries a ``# Copied from baselines/<file>.py`` marker that tests/test_baselines.py checks.
"""
