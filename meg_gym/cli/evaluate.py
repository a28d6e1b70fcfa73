"""Evaluate any policy of any MEG environment under the held-out protocol and write eval.json.

    meg-gym evaluate --policy static                        # a fixed policy of the environment
    meg-gym evaluate --policy best-known --env.budget-fraction 0.1
    meg-gym evaluate --policy runs/NAME                     # a learner run saved with --save-model
    meg-gym evaluate --policy my_package.policies:greedy    # your callable policy(obs, env)
    meg-gym evaluate --policy path/to/file.py:greedy --name greedy --seed 2
    meg-gym evaluate --env-id MEG-MultiCell-v0 --policy sinr-threshold --env.num-links 6
    meg-gym evaluate --env-id MEG-MultiCell-v0 --policy runs/IPPO_RUN   # an ippo_multi_cell.py run

The protocol is :mod:`meg_gym.evaluation`'s: TEST prompts, episode j seeded with --eval-seed + j, run in the
native vector env. Everything about an environment comes from its row in :mod:`meg_gym.registry`: its fixed
policies (``--policy NAME``), its settings (``--env.*``, the fields of its config class) and whether it is
multi-agent. A callable gets the vector env's observation batch and the vector env and returns powers in
[0, 1]: (num_envs, 1) or (num_envs,), or (num_envs, N) on a multi-agent env. A name ``module:attr`` must be
importable (installed, or on PYTHONPATH: ``PYTHONPATH=. meg-gym evaluate ...``); ``attr`` may also
be a factory that takes no arguments and returns the policy.

A learner run folder holds model.json (the algorithm, the baseline file that trained it and its arguments)
and its weights; the baseline file's ``load_policy(run_dir)`` rebuilds the policy from these two files only,
so loading runs no stored code. The environment settings default to the run's training settings; --env.*
flags that differ from them are used instead, with a note. The result goes to --output (default
runs/eval__{name}__{seed}/eval.json), with ``policy`` set to --name and the training seed in ``args``, ready
for ``meg-gym leaderboard``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path
from typing import Any

import tyro

from meg_gym import evaluation
from meg_gym.config import config_from_kwargs
from meg_gym.registry import ENVIRONMENTS, EnvironmentSpec, environment

BASELINES_PACKAGE = "meg_gym_baselines"  # baselines/, installed under this name


@dataclasses.dataclass
class CommonArgs:
    policy: str
    """a fixed policy of the environment (see --help of its row), a learner run folder saved with --save-model,
    or a callable as module:attr or file.py:attr"""
    name: str | None = None
    """the policy's name in eval.json and on the leaderboard (default: derived from --policy)"""
    seed: int = 1
    """the training seed this policy came from (leaderboard statistics are across training seeds)"""
    env_id: str = "MEG-PowerControl-v0"
    """the environment id (one of the suite's: """ + ", ".join(s.env_id for s in ENVIRONMENTS) + ")"
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split episodes"""
    eval_seed: int = evaluation.EVAL_SEED
    """first evaluation seed"""
    num_envs: int = 64
    """episodes run side by side (results do not depend on it)"""
    output: Path | None = None
    """where eval.json goes (default runs/eval__{name}__{seed}/eval.json)"""


def args_class(spec: EnvironmentSpec) -> type:
    """The command line for one environment: the common flags plus ``--env.*``, its config's fields."""
    config_type = spec.config_type()
    return dataclasses.make_dataclass(
        "Args",
        [("env", config_type, dataclasses.field(default_factory=config_type))],
        bases=(CommonArgs,),
    )


def learner_module(meta: dict[str, Any], run_dir: Path) -> Any:
    """The baseline file that trained a run: model.json's ``learner``, else the one whose ALGORITHM it names."""
    learner = meta.get("learner")
    if learner:
        try:
            return importlib.import_module(f"{BASELINES_PACKAGE}.{learner}")
        except ImportError as err:
            raise SystemExit(f"{run_dir}: its learner {learner!r} is not a baseline of this version ({err})") from err
    algorithm = meta.get("algorithm") or str(meta["args"].get("exp_name", ""))
    package = importlib.import_module(BASELINES_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{BASELINES_PACKAGE}.{info.name}")
        name = getattr(module, "ALGORITHM", None)
        if name and (algorithm == name or algorithm.startswith(f"{name}_")):
            return module
    raise SystemExit(f"{run_dir}/model.json: no baseline trains algorithm {algorithm!r}")


def callable_policy(spec: str):
    """``module:attr`` or ``path/to/file.py:attr``; an attribute that takes no arguments is a factory."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise SystemExit(f"--policy {spec!r} is not a fixed policy, a run folder, or module:attr")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise SystemExit(f"--policy {spec!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise SystemExit(
                f"--policy {spec!r}: cannot import {target!r} ({err}); install it, put its folder on PYTHONPATH "
                f"(e.g. PYTHONPATH=. meg-gym evaluate ...), or pass path/to/file.py:{attr}"
            ) from err
    if not hasattr(module, attr):
        raise SystemExit(f"--policy {spec!r}: {target} has no attribute {attr!r}")
    policy = getattr(module, attr)
    if not callable(policy):
        raise SystemExit(f"--policy {spec!r}: {attr} is not callable")
    try:
        takes_nothing = not inspect.signature(policy).parameters
    except (TypeError, ValueError):
        takes_nothing = False
    return policy() if takes_nothing else policy


def resolve(args: Any, spec: EnvironmentSpec) -> tuple[Any, str, Any, dict[str, Any]]:
    """(policy, name, environment config, provenance) for --policy."""
    config = args.env
    fixed = spec.fixed_policies()
    if args.policy in fixed:
        return fixed[args.policy](config), args.name or args.policy, config, {"kind": "fixed"}
    run_dir = Path(args.policy)
    if run_dir.is_dir():
        meta = evaluation.read_model_json(run_dir)
        run_env_id = meta["args"].get("env_id", "MEG-PowerControl-v0")
        stored_env = meta["args"].get("env", {})
        if run_env_id != spec.env_id:
            raise SystemExit(f"{run_dir} is a {run_env_id} run, not one for {spec.env_id}; pass --env-id {run_env_id}")
        module = learner_module(meta, run_dir)
        train_config = config_from_kwargs(type(config), {k: v for k, v in stored_env.items() if k != "split"})
        if config == type(config)():
            config = train_config
        elif config != train_config:
            changed = {k: v for k, v in config.to_dict().items() if v != getattr(train_config, k) and k != "split"}
            print(f"note: evaluating under settings that differ from training: {changed}")
        name = args.name or getattr(module, "ALGORITHM", run_dir.name)
        source = {"kind": "learner", "run": str(run_dir), "total_timesteps": meta["args"].get("total_timesteps")}
        return module.load_policy(run_dir), name, config, source
    if args.policy.rpartition(":")[0] == "":
        raise SystemExit(
            f"--policy {args.policy!r} is not a fixed policy of {spec.env_id} ({', '.join(fixed)}), a run folder, "
            "or module:attr"
        )
    return callable_policy(args.policy), args.name or args.policy.rpartition(":")[2], config, {"kind": "callable"}


def main(args: Any) -> dict[str, Any]:
    spec = environment(args.env_id)
    policy, name, config, source = resolve(args, spec)
    kwargs = evaluation.env_kwargs(config)
    result = evaluation.evaluate_policy(policy, spec.env_id, kwargs, args.eval_episodes, args.eval_seed, args.num_envs)
    run_name = f"eval__{name}__{args.seed}"
    output = args.output or Path("runs") / run_name / "eval.json"
    stored_args = {**dataclasses.asdict(args), "env": config.to_dict(), "source": source}
    if source.get("total_timesteps"):  # a learner's training budget, which the leaderboard shows and pools by
        stored_args["total_timesteps"] = source["total_timesteps"]
    path = evaluation.write_eval(output, result, name, run_name, stored_args)
    print(f"{name}: test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}")
    return result


def cli(argv: list[str] | None = None, prog: str | None = None) -> Any:
    """Parse the command line: --env-id first (it decides which settings --env.* takes), then everything."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env-id", "--env_id", default=CommonArgs.env_id)
    known, _ = pre.parse_known_args(argv)
    try:
        spec = environment(known.env_id)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    return tyro.cli(args_class(spec), args=argv, description=__doc__, prog=prog)


if __name__ == "__main__":
    main(cli())
