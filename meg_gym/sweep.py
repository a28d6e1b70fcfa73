"""Sweeps on Ray: algorithms x seeds x environment configurations, one trial each, resumable, one JSON line per trial.

``main(Args(...))`` does what ``python scripts/sweep.py`` does (its docstring shows the commands). A *trial* is one
(algorithm, seed, environment configuration, hyperparameters): a Ray task that runs the algorithm's single-file
baseline (``baselines/*.py``) as a subprocess in ``DIR/trials/{key}/`` and returns one row. Only the driver writes
``DIR/results.jsonl``: it appends a row as each trial finishes, flushed to disk, so an interrupted sweep loses
only the trials still running. ``--resume`` skips every trial whose key already has a row; the key is a hash of
everything that defines the trial, so a trial is never run twice and a row never written twice.

Failures: a trial whose worker process dies, or whose baseline exits with an error, is retried ``--retries``
times (default 2), each attempt from scratch. A trial that still fails is written to ``DIR/failures.jsonl``,
the sweep finishes the others and then exits with an error naming it; ``--resume`` tries it again.

Tuning: ``--search-trials K`` draws K hyperparameter settings per algorithm from :data:`SEARCH_SPACES` (the
first is the baseline's defaults), trains on the "fit" prompts and scores on the held-out "validation" prompts.
``--hparams-from DIR`` then runs each algorithm with the setting that scored best on validation in that search,
trained on all train prompts and labelled ``"{algo} (tuned, K trials)"``; test prompts decide nothing.

Security: a Ray cluster runs whatever code reaches it. The local instance this module starts has Ray's token
authentication on (a fresh random token per sweep) and no dashboard. Ray's own servers listen on every network
interface of the machine (Ray offers no way to bind them to localhost), so the token is what keeps others out:
run sweeps only on machines and networks you trust (docs/sweeps.md). Rows and trial outputs are JSON and
safetensors; nothing is unpickled from DIR.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym.baseline_runs import baselines_dir

RESULT_SCHEMA = "meg-gym-sweep-result/1"
SWEEP_SCHEMA = "meg-gym-sweep/1"

# algorithm -> (its file in baselines/, the environment it trains on)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "ppo": ("ppo_continuous_action.py", "MEG-PowerControl-v0"),
    "ddpg": ("ddpg_continuous_action.py", "MEG-PowerControl-v0"),
    "td3": ("td3_continuous_action.py", "MEG-PowerControl-v0"),
    "sac": ("sac_continuous_action.py", "MEG-PowerControl-v0"),
    "ppo-lagrangian": ("ppo_lagrangian.py", "MEG-SplitControl-v0"),
    "cpo": ("cpo.py", "MEG-SplitControl-v0"),
    "focops": ("focops.py", "MEG-SplitControl-v0"),
    "sac-lagrangian": ("sac_lagrangian.py", "MEG-SplitControl-v0"),
    "cvpo": ("cvpo.py", "MEG-SplitControl-v0"),
    "ppo-pid-lagrangian": ("ppo_lagrangian.py", "MEG-SplitControl-v0"),
    "ppo-penalty": ("ppo_lagrangian.py", "MEG-SplitControl-v0"),
    "ippo": ("ippo_multi_cell.py", "MEG-MultiCell-v0"),
}

# Algorithms that are a mode of another's file: the flags that select the mode, on every trial
MODES: dict[str, dict[str, Any]] = {
    "ppo-pid-lagrangian": {"multiplier_update": "pid", "exp_name": "ppo_pid_lagrangian"},
    "ppo-penalty": {"multiplier_lr": 0.0, "initial_multipliers": [1.0, 1.0], "exp_name": "ppo_penalty"},
}

# Random-search spaces: name -> ("log", low, high) for a log-uniform float, or a list of choices. Kept small and
# around each learner's defaults; updates_per_step stays <= 0.5 so that an off-policy trial costs at most twice
# its default's time.
_OFF_POLICY = {
    "learning_rate": ("log", 1e-4, 1e-3),
    "batch_size": [128, 256],
    "tau": [0.005, 0.01, 0.02],
    "updates_per_step": [0.25, 0.5],
    "log_range": [1.0, 2.0, 3.0],
    "reward_scale": [0.03, 0.1, 0.3],
    "learning_starts": [2_000, 5_000],
}
SEARCH_SPACES: dict[str, dict[str, Any]] = {
    "ppo": {
        "learning_rate": ("log", 1e-4, 1e-3),
        "num_steps": [8, 16, 32],
        "update_epochs": [4, 10],
        "clip_coef": [0.1, 0.2, 0.3],
        "init_log_std": [-1.5, -1.0, -0.5],
        "ent_coef": [0.0, 0.001],
        "reward_scale": [0.03, 0.1, 0.3],
    },
    "ddpg": {**_OFF_POLICY, "exploration_noise": [0.05, 0.1, 0.2]},
    "td3": {**_OFF_POLICY, "exploration_noise": [0.05, 0.1, 0.2], "policy_noise": [0.1, 0.2]},
    "sac": {**_OFF_POLICY, "alpha": [0.01, 0.05, 0.2], "autotune": [True, False]},
    # the constrained learners of MEG-SplitControl-v0: each learner's own step sizes and its constraint mechanism's
    # settings, plus the margin below the limits that every one of them aims at
    "ppo-lagrangian": {
        "learning_rate": ("log", 1e-4, 1e-3),
        "update_epochs": [4, 8],
        "ent_coef": [0.0, 0.01, 0.03],
        "multiplier_lr": ("log", 0.01, 0.2),
        "cost_margin": [0.05, 0.1, 0.15],
    },
    "ppo-pid-lagrangian": {
        "learning_rate": ("log", 1e-4, 1e-3),
        "ent_coef": [0.0, 0.01, 0.03],
        "pid_kp": [0.3, 1.0, 3.0],
        "pid_ki": ("log", 0.01, 0.2),
        "pid_kd": [0.0, 0.5, 2.0],
        "cost_margin": [0.05, 0.1, 0.15],
    },
    "cpo": {
        "max_kl": ("log", 0.005, 0.05),
        "damping": [0.01, 0.1],
        "critic_learning_rate": ("log", 3e-4, 3e-3),
        "gae_lambda": [0.9, 0.95, 0.97],
        "cost_margin": [0.05, 0.1, 0.15],
    },
    "focops": {
        "learning_rate": ("log", 1e-4, 1e-3),
        "lam": [0.5, 1.5, 3.0],
        "delta": [0.01, 0.02, 0.04],
        "nu_lr": ("log", 0.05, 1.0),
        "ent_coef": [0.0, 0.01, 0.05],
        "cost_margin": [0.05, 0.1, 0.15],
    },
    "sac-lagrangian": {
        "q_lr": ("log", 1e-4, 1e-3),
        "policy_lr": ("log", 1e-4, 1e-3),
        "tau": [0.005, 0.01, 0.02],
        "target_entropy_scale": [0.05, 0.1, 0.2],
        "multiplier_lr": ("log", 0.05, 1.0),
        "cost_margin": [0.05, 0.1, 0.15],
    },
    "cvpo": {
        "critic_lr": ("log", 3e-4, 3e-3),
        "policy_lr": ("log", 1e-4, 1e-3),
        "tau": [0.01, 0.02, 0.05],
        "kl_epsilon": [0.01, 0.02, 0.05],
        "cost_margin": [0.05, 0.1, 0.15],
    },
}


@dataclass
class Args:
    env: str = "MEG-PowerControl-v0"
    """the environment id"""
    algo: list[str] = field(default_factory=lambda: ["ppo"])
    """algorithms to run (each a baselines/ file): see meg_gym.sweep.ALGORITHMS"""
    seeds: int = 3
    """training seeds per (algorithm, configuration): first_seed, first_seed + 1, ..."""
    first_seed: int = 1
    """the first training seed"""
    total_timesteps: int = 100_000
    """environment steps per trial"""
    out: Path = Path("runs/sweep")
    """the sweep's folder: results.jsonl, failures.jsonl, sweep.json, trials/"""
    env_config: list[str] = field(default_factory=lambda: ["{}"])
    """environment configurations, each a JSON object of settings, e.g. '{}' '{"budget_fraction": 0.1}'"""
    hparams: str = "{}"
    """hyperparameters for every trial, a JSON object of the baseline's argument names, e.g. '{"learning_rate": 1e-3}'"""
    search_trials: int = 0
    """tuning: this many hyperparameter settings per algorithm (the first is the defaults), trained on "fit" and
    scored on "validation"; 0: no search"""
    search_seed: int = 0
    """seed of the random search (the settings drawn are part of the trials' keys)"""
    hparams_from: Path | None = None
    """tuning: run each algorithm with the setting that scored best on validation in this search sweep's folder"""
    validation_episodes: int = 512
    """validation episodes per search trial"""
    eval_episodes: int = 1024
    """test episodes per trial (the evaluation protocol of meg_gym.evaluation)"""
    resume: bool = False
    """continue the sweep in --out: skip trials that already have a row"""
    save_models: bool = False
    """keep every trial's policy (the baseline's --save-model, in trials/KEY/runs/KEY), e.g. to run it live later"""
    retries: int = 2
    """attempts after the first for a trial that fails (worker died or the baseline exited with an error)"""
    cpus_per_trial: float = 1.0
    """CPUs each trial reserves (its torch threads)"""
    gpus_per_trial: float = 0.0
    """GPUs each trial reserves; > 0 passes --cuda to the baseline"""
    num_cpus: int | None = None
    """CPUs of the local Ray instance (default: all); ignored with --address"""
    address: str | None = None
    """join a running Ray cluster (e.g. "ray://head:10001" or "auto") instead of starting a local instance"""
    track: bool = False
    """log every trial to Weights & Biases (offline unless WANDB_API_KEY is set)"""
    wandb_project_name: str = "meg-gym"
    """the W&B project"""


@dataclass(frozen=True)
class Trial:
    """One unit of a sweep; ``key`` hashes every field, so equal trials share a key and a row."""

    env_id: str
    algo: str
    seed: int
    total_timesteps: int
    env_config: dict[str, Any]
    hparams: dict[str, Any]
    train_split: str
    validation_episodes: int
    eval_episodes: int
    label: str
    stage: str  # "run", "search" (scored on validation) or "tuned"

    @property
    def key(self) -> str:
        body = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


class TrialFailed(RuntimeError):
    """A baseline exited with an error; the message holds the end of its log."""


def baseline_args(algo: str) -> dict[str, Any]:
    """The default arguments of an algorithm's baseline (its ``Args`` dataclass), read without running it."""
    import importlib

    module = importlib.import_module("meg_gym_baselines." + ALGORITHMS[algo][0].removesuffix(".py"))
    return {f.name: getattr(module.Args(), f.name) for f in dataclasses.fields(module.Args)}


def draw_search(algo: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` hyperparameter settings for ``algo``: its defaults ({}) first, then random draws from its space."""
    if algo not in SEARCH_SPACES:
        raise SystemExit(f"no search space for {algo!r}; --search-trials supports {sorted(SEARCH_SPACES)}")
    rng = np.random.default_rng([seed, int(hashlib.sha256(algo.encode()).hexdigest()[:8], 16)])
    settings: list[dict[str, Any]] = [{}]
    while len(settings) < count:
        drawn = {}
        for name, space in SEARCH_SPACES[algo].items():
            if isinstance(space, tuple):
                _, low, high = space
                drawn[name] = float(f"{np.exp(rng.uniform(np.log(low), np.log(high))):.3g}")
            else:
                drawn[name] = space[int(rng.integers(len(space)))]
                drawn[name] = drawn[name].item() if hasattr(drawn[name], "item") else drawn[name]
        settings.append(drawn)
    return settings[:count]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results.jsonl. A last line cut short (the driver killed mid-write) is moved aside to
    results.jsonl.torn, never silently dropped; any other unreadable line is an error."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):
                with open(path.with_name(path.name + ".torn"), "a") as torn:
                    torn.write(line + "\n")
                path.write_text(text[: len(text) - len(line)])
                print(f"{path}: moved a torn last line (the driver stopped mid-write) to {path.name}.torn")
                break
            raise SystemExit(f"{path}:{number} is not JSON ({err}); repair or remove that line") from err
        if row.get("schema") != RESULT_SCHEMA:
            raise SystemExit(f"{path}:{number} is not a {RESULT_SCHEMA} row")
        rows.append(row)
    keys = [r["trial"] for r in rows]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"{path} holds a trial twice; it was edited by hand or written by two sweeps at once")
    return rows


def best_settings(search_dir: Path) -> dict[str, tuple[dict[str, Any], int, float]]:
    """Per algorithm: the hyperparameters with the best mean validation PSNR over their seeds in a search sweep,
    how many settings were tried, and that validation PSNR (see :func:`choose_setting`)."""
    rows = [r for r in read_rows(search_dir / "results.jsonl") if r["stage"] == "search"]
    if not rows:
        raise SystemExit(f"{search_dir}/results.jsonl has no search rows; run a sweep with --search-trials first")
    best = {}
    for algo in sorted({r["algo"] for r in rows}):
        mine = [r for r in rows if r["algo"] == algo]
        chosen, score = choose_setting(mine)
        best[algo] = (chosen, len({json.dumps(r["hparams"], sort_keys=True) for r in mine}), score)
    return best


def choose_setting(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """The hyperparameters (and their mean validation PSNR) that search rows of one algorithm select.

    Settings are compared on their mean over seeds. Constrained environments: only settings whose mean validation
    costs meet every limit compete on PSNR; when none does, the one that exceeds its limits least (the largest
    cost over its limit) is chosen.
    """
    scores: dict[str, list[float]] = {}
    excess: dict[str, list[float]] = {}
    for r in rows:
        key = json.dumps(r["hparams"], sort_keys=True)
        scores.setdefault(key, []).append(r["validation_psnr_mean"])
        limits = r.get("cost_limits") or {}
        over = [r.get("validation_costs", {}).get(c, 0.0) / v - 1.0 for c, v in limits.items() if v > 0]
        excess.setdefault(key, []).append(max(over, default=-1.0))
    feasible = [k for k in scores if np.mean(excess[k]) <= 1e-9]
    if feasible:
        chosen = max(feasible, key=lambda k: np.mean(scores[k]))
    else:
        chosen = min(scores, key=lambda k: np.mean(excess[k]))
    return json.loads(chosen), float(np.mean(scores[chosen]))


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{what} must be a JSON object, e.g. '{{\"budget_fraction\": 0.1}}': {err}") from err
    if not isinstance(value, dict):
        raise SystemExit(f"{what} must be a JSON object, got {text!r}")
    return value


def plan(args: Args) -> list[Trial]:
    """Every trial of the sweep, checked before anything runs (unknown names and bad values give a clear error)."""
    from meg_gym import evaluation
    from meg_gym.config import config_from_kwargs

    if args.seeds < 1 or args.total_timesteps < 1 or args.eval_episodes < 1:
        raise SystemExit("--seeds, --total-timesteps and --eval-episodes must be >= 1")
    if args.search_trials and args.hparams_from:
        raise SystemExit("--search-trials runs a search and --hparams-from uses one; give one of them")
    unknown = [a for a in args.algo if a not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"unknown algorithm(s) {unknown}; choose from {sorted(ALGORITHMS)}")
    wrong_env = [a for a in args.algo if ALGORITHMS[a][1] != args.env]
    if wrong_env:
        raise SystemExit(f"{wrong_env} train on {[ALGORITHMS[a][1] for a in wrong_env]}, not {args.env}")
    configs = []
    for text in args.env_config:
        overrides = _json_object(text, "--env-config")
        try:
            config_from_kwargs(evaluation.config_class(args.env), {k: v for k, v in overrides.items() if k != "split"})
        except (TypeError, ValueError) as err:
            raise SystemExit(f"--env-config {text}: {err}") from err
        configs.append(overrides)
    common = _json_object(args.hparams, "--hparams")
    chosen = best_settings(args.hparams_from) if args.hparams_from else {}
    trials = []
    for algo in args.algo:
        defaults = baseline_args(algo)
        if args.search_trials:
            settings, stage, label = (
                draw_search(algo, args.search_trials, args.search_seed),
                "search",
                f"{algo} (search)",
            )
        elif args.hparams_from:
            if algo not in chosen:
                raise SystemExit(f"{args.hparams_from} has no search rows for {algo}")
            best, tried, _ = chosen[algo]
            settings, stage, label = [best], "tuned", f"{algo} (tuned, {tried} trials)"
        else:
            settings, stage, label = [{}], "run", algo
        for setting in settings:
            hparams = {**setting, **common}  # what --hparams fixes is not searched
            bad = [k for k in hparams if k not in defaults or k in _MANAGED]
            if bad:
                raise SystemExit(f"{algo} has no hyperparameter(s) {bad} to set; its arguments: {sorted(defaults)}")
            for config in configs:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    trials.append(
                        Trial(
                            env_id=args.env,
                            algo=algo,
                            seed=seed,
                            total_timesteps=args.total_timesteps,
                            env_config=config,
                            hparams=hparams,
                            train_split="fit" if stage == "search" else "train",
                            validation_episodes=args.validation_episodes if stage == "search" else 0,
                            eval_episodes=args.eval_episodes,
                            label=label,
                            stage=stage,
                        )
                    )
    return trials


# arguments the sweep sets itself; hyperparameters may not override them
_MANAGED = {"seed", "total_timesteps", "run_name", "env", "env_id", "track", "cuda", "train_split",
            "validation_episodes", "eval_episodes", "save_model", "resume", "capture_video"}  # fmt: skip


def cli_flags(prefix: str, values: dict[str, Any]) -> list[str]:
    """tyro command-line flags for a dict of settings (booleans as --x / --no-x, sequences as several values)."""
    out = []
    for name, value in values.items():
        flag = f"--{prefix}{name.replace('_', '-')}"
        if isinstance(value, bool):
            out.append(flag if value else f"--{prefix}no-{name.replace('_', '-')}")
        elif isinstance(value, list | tuple):
            out += [flag, *map(str, value)]
        elif value is None:
            out += [flag, "None"]
        else:
            out += [flag, str(value)]
    return out


def command(trial: Trial, track: bool, cuda: bool, save_model: bool = False) -> list[str]:
    """The baseline command line of a trial."""
    script = baselines_dir() / ALGORITHMS[trial.algo][0]
    cmd = [sys.executable, str(script), "--run-name", trial.key, "--seed", str(trial.seed)]
    cmd += ["--total-timesteps", str(trial.total_timesteps), "--eval-episodes", str(trial.eval_episodes)]
    if trial.stage == "search":
        cmd += ["--train-split", trial.train_split, "--validation-episodes", str(trial.validation_episodes)]
    cmd += cli_flags("env.", trial.env_config) + cli_flags("", {**MODES.get(trial.algo, {}), **trial.hparams})
    return (
        cmd + (["--track"] if track else []) + (["--cuda"] if cuda else []) + (["--save-model"] if save_model else [])
    )


def trial_row(run_dir: Path) -> dict[str, Any] | None:
    """The results row of the sweep trial whose saved run is ``run_dir`` (SWEEP/trials/KEY/runs/KEY, the layout of
    :func:`run_trial`); None for a run outside a sweep or a trial without a row."""
    here = Path(run_dir).resolve()
    if len(here.parents) < 4 or here.parents[2].name != "trials" or here.parents[1].name != here.name:
        return None
    results = here.parents[3] / "results.jsonl"
    rows = read_rows(results) if results.exists() else []
    return next((r for r in rows if r["trial"] == here.name), None)


def _die_with_parent() -> None:
    """In the baseline's process: get SIGKILL if the Ray worker that started it dies (Linux), so that a retried
    attempt never races a stray one."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_trial(
    trial: Trial, out: str, track: bool, cuda: bool, threads: int, project: str, save_model: bool = False
) -> dict[str, Any]:
    """Run one trial from scratch in ``out/trials/{key}`` and return its results row (runs inside a Ray worker)."""
    from meg_gym import evaluation

    folder = Path(out) / "trials" / trial.key
    shutil.rmtree(folder, ignore_errors=True)  # a retried attempt starts over
    folder.mkdir(parents=True)
    (folder / "worker.pid").write_text(str(os.getpid()))  # the fault-injection test kills this process
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if track:
        env.update(WANDB_DIR=str(folder), WANDB_PROJECT=project, WANDB_RUN_GROUP=Path(out).name)
        env.setdefault("WANDB_MODE", "online" if env.get("WANDB_API_KEY") else "offline")
    start = time.time()
    with open(folder / "log.txt", "w") as log:
        done = subprocess.run(
            command(trial, track, cuda, save_model), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
    wall = time.time() - start
    if done.returncode:
        tail = "\n".join((folder / "log.txt").read_text().splitlines()[-15:])
        raise TrialFailed(f"{trial.algo} seed {trial.seed} (trial {trial.key}) exited {done.returncode}:\n{tail}")
    run_dir = folder / "runs" / trial.key
    result = json.loads((run_dir / "eval.json").read_text())
    evaluation.validate_eval(result)
    validation, validation_costs = None, {}
    if trial.validation_episodes:
        scored = json.loads((run_dir / "validation.json").read_text())
        validation = scored["psnr"]["mean"]
        validation_costs = {k: scored[k]["mean"] for k in evaluation.SESSION_COSTS if k in scored}
    costs = {f"{k}_mean": result[k]["mean"] for k in evaluation.SESSION_COSTS if k in result}
    return {
        "schema": RESULT_SCHEMA,
        "trial": trial.key,
        "env_id": trial.env_id,
        "algo": trial.algo,
        "seed": trial.seed,
        "label": trial.label,
        "stage": trial.stage,
        "config": result["env_config"],
        "env_overrides": trial.env_config,
        "hparams": trial.hparams,
        "total_timesteps": trial.total_timesteps,
        "train_split": trial.train_split,
        "commit": result["git_commit"],
        "cache_sha256": result["cache_sha256"],
        "psnr_mean": result["psnr"]["mean"],
        "psnr_std": result["psnr"]["std"],
        "ssim_mean": result["ssim"]["mean"],
        "energy_used_mean": result["energy_used"]["mean"],
        "energy_budget": result["energy_budget"],
        **costs,
        "validation_psnr_mean": validation,
        "validation_costs": validation_costs,
        "cost_limits": result.get("cost_limits", {}),
        "eval_episodes": result["episodes"],
        "wall_s": wall,
        "host": platform.node(),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "eval": result,
    }


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _start_ray(args: Args) -> Any:
    """Join --address, or start a local instance with token authentication and no dashboard."""
    if args.address is None:
        # set before Ray is imported: Ray reads them when it starts its processes
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    # kill a dead worker's child processes too (the baseline), as _die_with_parent does
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper", "1")
    try:
        import ray
    except ImportError as err:
        raise SystemExit('the sweep runs on Ray: pip install -e ".[sweep]"') from err
    if args.address is None:
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    return ray


def _check_folder(args: Args, trials: list[Trial]) -> list[dict[str, Any]]:
    """Rows already in --out (with --resume), after checking that the folder holds this sweep."""
    spec = {"schema": SWEEP_SCHEMA, "env": args.env, "trials": sorted(t.key for t in trials)}
    stored = args.out / "sweep.json"
    results = args.out / "results.jsonl"
    if not args.resume:
        if results.exists() and results.stat().st_size:
            raise SystemExit(
                f"{results} already holds results; pass --resume to continue that sweep, or choose another --out"
            )
    elif stored.exists():
        previous = json.loads(stored.read_text())
        if previous.get("trials") != spec["trials"]:
            raise SystemExit(
                f"{args.out} holds a sweep with other trials ({len(previous.get('trials', []))} vs {len(trials)} now); "
                "resume it with the command that started it (sweep.json records it), or choose another --out"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    if not stored.exists():
        record = {**spec, "command": sys.argv, "args": json.loads(json.dumps(dataclasses.asdict(args), default=str)),
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        stored.write_text(json.dumps(record, indent=1))
    rows = read_rows(results)
    stray = [r["trial"] for r in rows if r["trial"] not in spec["trials"]]
    if stray:
        raise SystemExit(f"{results} holds rows of trials not in this sweep ({stray[:3]}...); choose another --out")
    return rows


def main(args: Args) -> list[dict[str, Any]]:
    """Run the sweep; returns every row of results.jsonl (earlier ones included)."""
    trials = plan(args)
    rows = _check_folder(args, trials)
    done = {r["trial"] for r in rows}
    todo = [t for t in trials if t.key not in done]
    print(f"{len(trials)} trials, {len(done)} already done, {len(todo)} to run -> {args.out / 'results.jsonl'}")
    if not todo:
        return rows
    ray = _start_ray(args)
    start = time.time()
    failures = []
    try:
        remote = ray.remote(num_cpus=args.cpus_per_trial, num_gpus=args.gpus_per_trial, max_retries=args.retries,
                            retry_exceptions=True)(run_trial)  # fmt: skip
        threads = max(1, int(args.cpus_per_trial))
        pending = {
            remote.remote(t, str(args.out.resolve()), args.track, args.gpus_per_trial > 0, threads,
                          args.wandb_project_name, args.save_models): t
            for t in todo
        }  # fmt: skip
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            try:
                row = ray.get(ready[0])
            except Exception as err:  # every attempt failed (the error is Ray's wrapper of the last one)
                failures.append(trial.key)
                _append(args.out / "failures.jsonl", {"trial": trial.key, "algo": trial.algo, "seed": trial.seed,
                                                       "error": str(err)[-2000:], "when": time.time()})  # fmt: skip
                print(f"FAILED {trial.label} seed {trial.seed} ({trial.key}) after {args.retries + 1} attempts")
                continue
            _append(args.out / "results.jsonl", row)
            rows.append(row)
            print(f"{len(rows)}/{len(trials)} {row['label']} seed {row['seed']}: test PSNR {row['psnr_mean']:.2f} dB"
                  + (f", validation {row['validation_psnr_mean']:.2f}" if row["validation_psnr_mean"] else "")
                  + f" ({row['wall_s']:.0f} s)", flush=True)  # fmt: skip
    finally:
        ray.shutdown()
    print(f"sweep wall time {time.time() - start:.0f} s for {len(todo) - len(failures)} trials")
    if failures:
        raise SystemExit(f"{len(failures)} trial(s) failed after every retry: {failures}; see "
                         f"{args.out / 'failures.jsonl'} and trials/*/log.txt, then --resume")  # fmt: skip
    return rows
