"""The ``meg-gym`` command: what users run, from an installed package (no checkout needed).

    meg-gym train ppo-lagrangian --seed 2 --save-model        # a baseline of baselines/ (its own flags follow)
    meg-gym evaluate --policy runs/NAME --env-id MEG-SplitControl-v0
    meg-gym leaderboard runs/                                  # eval.json files -> docs/results/leaderboard.md
    meg-gym sweep --algo ppo --seeds 3 --out runs/sweeps/ppo   # Ray trials (pip install "meg-gym[sweep]")
    meg-gym benchmark --quick                                  # speed against the compute floor

Each subcommand parses its own flags with tyro (``meg-gym SUBCOMMAND --help``): ``evaluate`` is
:mod:`meg_gym.cli.evaluate`, ``leaderboard`` :mod:`meg_gym.leaderboard`, ``sweep`` :mod:`meg_gym.sweep`,
``benchmark`` :mod:`meg_gym.cli.benchmark`; ``train NAME`` runs the learner file of ``baselines/`` (installed as
``meg_gym_baselines``) as if it were run as a script. scripts/ keeps the commands that built the shipped assets
and the reports in docs/.
"""

from __future__ import annotations

import runpy
import sys

# the learners ``meg-gym train`` runs: name -> module of meg_gym_baselines (baselines/<module>.py)
LEARNERS: dict[str, str] = {
    "ppo": "ppo_continuous_action",
    "ddpg": "ddpg_continuous_action",
    "td3": "td3_continuous_action",
    "sac": "sac_continuous_action",
    "ippo": "ippo_multi_cell",
    "ppo-lagrangian": "ppo_lagrangian",
    "cpo": "cpo",
    "focops": "focops",
    "sac-lagrangian": "sac_lagrangian",
    "cvpo": "cvpo",
}

SUBCOMMANDS = {
    "train": "train a baseline learner: meg-gym train NAME [its flags] (NAME: " + ", ".join(LEARNERS) + ")",
    "evaluate": "evaluate a fixed policy, a saved learner run or your callable on the test prompts -> eval.json",
    "leaderboard": "collect eval.json files into the leaderboard (docs/results/leaderboard.md and .json)",
    "sweep": "algorithms x seeds x configurations as parallel Ray trials, resumable; tuning on validation prompts",
    "benchmark": "environment speed against its compute floor (steps per second, ratios measured in one run)",
}


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: meg-gym SUBCOMMAND [flags]   (meg-gym SUBCOMMAND --help for its flags)", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    return "\n".join(lines)


def train(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: meg-gym train NAME [flags of the learner]   (meg-gym train NAME --help for them)\n")
        print("learners: " + ", ".join(f"{name} (baselines/{module}.py)" for name, module in LEARNERS.items()))
        return
    name, *rest = argv
    module = LEARNERS.get(name) or (name if name in LEARNERS.values() else None)
    if module is None:
        raise SystemExit(f"meg-gym train: unknown learner {name!r}; choose from {', '.join(LEARNERS)}")
    sys.argv = [f"meg-gym train {name}", *rest]
    runpy.run_module(f"meg_gym_baselines.{module}", run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command == "train":
        train(rest)
    elif command == "evaluate":
        from meg_gym.cli import evaluate

        evaluate.main(evaluate.cli(rest, prog="meg-gym evaluate"))
    elif command in ("leaderboard", "sweep", "benchmark"):
        import importlib

        import tyro

        module = importlib.import_module(
            {"leaderboard": "meg_gym.leaderboard", "sweep": "meg_gym.sweep", "benchmark": "meg_gym.cli.benchmark"}[
                command
            ]
        )
        module.main(tyro.cli(module.Args, args=rest, prog=f"meg-gym {command}", description=module.__doc__))
    else:
        raise SystemExit(f"meg-gym: unknown subcommand {command!r}\n\n{usage()}")


if __name__ == "__main__":
    main()
