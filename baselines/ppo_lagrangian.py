"""PPO-Lagrangian (and PID-Lagrangian) for MEG-SplitControl-v0's constrained MDP, in one file (CleanRL's style).

    python baselines/ppo_lagrangian.py                                       # PPO-Lagrangian, 600k steps
    python baselines/ppo_lagrangian.py --multiplier-update pid --exp-name ppo_pid_lagrangian   # PID-Lagrangian
    python baselines/ppo_lagrangian.py --multiplier-lr 0 --initial-multipliers 1.0 1.0 --exp-name ppo_penalty
                                                                               # PPO with a fixed penalty
    python baselines/ppo_lagrangian.py --env-id meg_gym/TabularCMDP-v0 --total-timesteps 100000
                                                                               # the check against an LP optimum

The policy is a product of three categorical distributions (split step, scheme, energy level: the env's
MultiDiscrete action). Each step's reward is the request's image quality; each cost of ``info["costs"]`` is divided
by its episode limit (so a session meets a limit when its normalised cost sums to at most 1). The critic has one
head for the return and one per cost, each with its own generalised advantage estimate. The policy follows the
penalised advantage ``(A_r - sum_c lam_c A_c) / (1 + sum_c lam_c)`` (the division keeps the step size of the
policy stable as the multipliers grow), and after every rollout each multiplier takes a dual ascent step on its
constraint, ``lam_c <- max(0, lam_c + multiplier_lr * (mean episode cost_c / limit_c - (1 - cost_margin)))``, aiming
a margin below each limit: the Lagrangian method
of Ray, Achiam & Amodei, "Benchmarking Safe Exploration in Deep Reinforcement Learning" (OpenAI, 2019). With
``--multiplier-lr 0`` the multipliers stay at ``--initial-multipliers``: PPO with a fixed penalty.

``--multiplier-update pid`` sets each multiplier by a PID controller on its constraint instead (Stooke, Achiam &
Abbeel, "Responsive Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020, Algorithm 2): with
the error ``e = cost / limit - (1 - margin)``, the integral ``I <- max(0, I + e)`` and an exponential average
``J`` of the episode cost, ``lam = max(0, kp * (J - (1 - margin)) + ki * I + kd * max(0, J - J_previous))``. The
integral term alone is the gradient method above (with ``ki`` as its step); the proportional and derivative
terms react to a rising cost before the integral has built up, which damps the oscillation of the multipliers.

The costs are whatever the environment's ``info["costs"]`` holds, with its ``cost_limits``
(``meg_gym.constrained``); a Discrete action space is one head. Learning curves and the violations incurred while
training go to ``runs/{run_name}/curves.jsonl`` (and tensorboard).

Sessions are 32 requests and the rollout is one session per environment (``--num-steps 32``, same-step
autoreset), so every rollout ends with complete sessions whose costs update the multipliers. At the end the
deterministic policy (the mode of each head) is evaluated on the held-out test prompts -> runs/{run_name}/eval.json.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import constrained, evaluation
from meg_gym.config import SplitControlConfig

ALGORITHM = "ppo-lagrangian"


@dataclass
class Args:
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic and deterministic algorithms"""
    cuda: bool = False
    """use CUDA when available (the environment itself runs on the CPU)"""
    track: bool = False
    """log to Weights & Biases (offline unless WANDB_API_KEY is set)"""
    wandb_project_name: str = "meg-gym"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    save_model: bool = False
    """save the agent to runs/{run_name}/ (model.safetensors, and checkpoint.pt to resume)"""
    resume: bool = False
    """resume from runs/{run_name}/checkpoint.pt when --run-name names an earlier run"""
    run_name: str | None = None
    """run name; default {env_id}__{exp_name}__{seed}__{time}"""

    env_id: str = "MEG-SplitControl-v0"
    """the environment id"""
    env: SplitControlConfig = field(default_factory=SplitControlConfig)
    """environment settings, passed to gym.make_vec (split is forced to "train" for training)"""
    total_timesteps: int = 600_000
    """total environment steps (requests)"""
    learning_rate: float = 3e-4
    """the Adam learning rate"""
    num_envs: int = 64
    """parallel sessions (one native vector env)"""
    num_steps: int = 32
    """steps per environment per rollout (one session by default)"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to 0"""
    gamma: float = 1.0
    """discount factor (sessions are finite; constraints are on undiscounted sums)"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 8
    """epochs per rollout"""
    clip_coef: float = 0.2
    """PPO's clipping coefficient"""
    ent_coef: float = 0.01
    """entropy coefficient"""
    vf_coef: float = 0.5
    """value-loss coefficient (all heads)"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    multiplier_lr: float = 0.05
    """dual ascent step of the Lagrange multipliers (0: fixed penalty); 0.5 overshot to multipliers of 50 and a policy
    that never let the UE denoise (one trial run, 300k steps), 0.05 settled"""
    cost_margin: float = 0.1
    """the multipliers aim at (1 - margin) x each limit: the deterministic policy evaluated at the end and the test
    prompts differ from the stochastic training policy, and a run aimed at the limit itself ended above it (83 J of
    80, one trial)"""
    initial_multipliers: tuple[float, ...] = (0.0,)
    """the multipliers' initial values, one per cost (MEG-SplitControl-v0: ue_energy, deadline_miss), or one for all"""
    multiplier_update: Literal["gradient", "pid"] = "gradient"
    """how the multipliers follow the constraints: dual gradient ascent, or a PID controller (Stooke et al. 2020)"""
    pid_kp: float = 1.0
    """PID: proportional gain on the (smoothed) cost above its target"""
    pid_ki: float = 0.05
    """PID: integral gain (the gradient method's step, multiplier_lr, plays this role there)"""
    pid_kd: float = 0.5
    """PID: derivative gain on a rising (smoothed) cost"""
    pid_smoothing: float = 0.8
    """PID: weight of the past in the exponential average of the episode cost behind the P and D terms"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split sessions in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; the sweep's tuning sets both)"""


# Copied from baselines/ppo_continuous_action.py
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, nvec: list[int], num_costs: int):
        super().__init__()
        self.nvec = list(nvec)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.register_buffer("obs_count", torch.tensor(1e-4))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1 + num_costs), std=1.0),
        )  # fmt: skip
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, sum(nvec)), std=0.01),
        )  # fmt: skip

    def update_obs_stats(self, obs: torch.Tensor) -> None:
        """Running mean and variance of observations (parallel update of Chan et al.)."""
        batch_mean, batch_var, n = obs.mean(0), obs.var(0, unbiased=False), obs.shape[0]
        delta, total = batch_mean - self.obs_mean, self.obs_count + n
        self.obs_mean += delta * n / total
        self.obs_var.copy_(
            (self.obs_var * self.obs_count + batch_var * n + delta**2 * self.obs_count * n / total) / total
        )
        self.obs_count.fill_(total)

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)).clamp(-10, 10)

    def get_values(self, obs: torch.Tensor) -> torch.Tensor:
        """(batch, 1 + costs): the value of the return and of each normalised cost."""
        return self.critic(self.normalise(obs))

    def heads(self, obs: torch.Tensor) -> list[Categorical]:
        logits = self.actor(self.normalise(obs))
        return [Categorical(logits=part) for part in torch.split(logits, self.nvec, dim=1)]

    def get_action_and_value(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        heads = self.heads(obs)
        if action is None:
            action = torch.stack([h.sample() for h in heads], dim=1)
        logprob = sum(h.log_prob(action[:, i]) for i, h in enumerate(heads))
        entropy = sum(h.entropy() for h in heads)
        return action, logprob, entropy, self.get_values(obs)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The mode of each head, for deterministic evaluation."""
        return torch.stack([h.probs.argmax(1) for h in self.heads(obs)], dim=1)

    def joint_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The stochastic policy's probability of every joint action, ``(batch, prod(nvec))``."""
        with torch.no_grad():
            heads = self.heads(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        return constrained.joint_probabilities([h.probs.numpy() for h in heads])


def load_policy(run_dir: str | Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """The deterministic policy of a run saved with --save-model: ``policy(obs, env) -> actions (num_envs, 3)``.

    Reads only the run's model.json and model.safetensors (no stored code runs).
    """
    meta, state = evaluation.load_saved_run(run_dir, "model.safetensors")
    agent = Agent(int(meta["obs_dim"]), meta["nvec"], len(meta.get("cost_names", ("ue_energy", "deadline_miss"))))
    try:
        agent.load_state_dict(state)
    except RuntimeError as err:
        raise SystemExit(f"{run_dir}: the saved agent does not fit this version's network ({err})") from err
    agent.eval()

    discrete = bool(meta.get("discrete", False))

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        with torch.no_grad():
            actions = agent.act(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()
        return actions[:, 0] if discrete else actions

    return policy


def policy_name(args: Any) -> str:
    if args.multiplier_update == "pid":
        return "ppo-pid-lagrangian"
    return "ppo-penalty" if args.multiplier_lr == 0 else "ppo-lagrangian"


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.check_tuning_splits(args.train_split, args.validation_episodes)
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    run_name = args.run_name or f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path("runs") / run_name
    tracking = (
        evaluation.start_tracking(args, run_name, args.wandb_project_name, args.wandb_entity) if args.track else None
    )
    writer = SummaryWriter(str(run_dir))
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    )

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    envs = constrained.make_training_envs(args.env_id, args.num_envs, args.env, split=args.train_split)
    cost_limits = constrained.cost_limits(envs)
    cost_names, limits = list(cost_limits), np.array(list(cost_limits.values()))
    num_costs = len(cost_names)
    if len(args.initial_multipliers) not in (1, num_costs):
        raise SystemExit(f"--initial-multipliers needs 1 or {num_costs} values, one per cost {cost_names}")
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
    nvec = [int(envs.single_action_space.n)] if discrete else [int(n) for n in envs.single_action_space.nvec]
    agent = Agent(obs_dim, nvec, num_costs).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    multipliers = torch.tensor(args.initial_multipliers, dtype=torch.float32).expand(num_costs).clone()
    pid = {"integral": torch.zeros(num_costs), "smoothed": None}  # the PID controller's state

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, len(nvec)), dtype=torch.long, device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    signals = torch.zeros((args.num_steps, args.num_envs, 1 + num_costs), device=device)  # reward, then costs
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs, 1 + num_costs), device=device)

    start_iteration, global_step = 1, 0
    checkpoint = run_dir / "checkpoint.pt"
    resumed = args.resume and checkpoint.exists()
    if resumed:
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        agent.load_state_dict(state["agent"])
        optimizer.load_state_dict(state["optimizer"])
        multipliers = state["multipliers"].cpu()
        pid["integral"] = state.get("pid_integral", pid["integral"]).cpu()
        pid["smoothed"] = state.get("pid_smoothed")
        start_iteration, global_step = int(state["iteration"]) + 1, int(state["global_step"])
        print(f"resumed {run_name} at iteration {start_iteration}, step {global_step}")
    curves = constrained.TrainingCurves(run_dir, writer, cost_names, resume=resumed)
    start_time, start_step = time.time(), global_step
    progress = tqdm(
        total=args.num_iterations * args.num_steps * args.num_envs, initial=global_step, unit="step", mininterval=2.0
    )
    next_obs, _ = envs.reset(seed=args.seed + 1000 * (start_iteration - 1))
    next_obs = torch.tensor(next_obs, device=device)
    next_done = torch.zeros(args.num_envs, device=device)
    tracker = constrained.EpisodeTracker(args.num_envs, num_costs)

    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
        finished_returns, finished_costs = [], []

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            agent.update_obs_stats(next_obs)
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value
            actions[step] = action
            logprobs[step] = logprob
            env_action = action[:, 0] if discrete else action
            next_obs_np, reward, terminations, truncations, infos = envs.step(env_action.cpu().numpy())
            costs = constrained.step_costs(infos, cost_names, args.num_envs) / limits
            signals[step, :, 0] = torch.tensor(reward * args.reward_scale, device=device, dtype=torch.float32)
            signals[step, :, 1:] = torch.tensor(costs, device=device, dtype=torch.float32)
            next_obs = torch.tensor(next_obs_np, device=device, dtype=torch.float32)
            ended = np.logical_or(terminations, truncations)
            next_done = torch.tensor(ended, device=device, dtype=torch.float32)
            episode_returns, episode_costs = tracker.step(np.asarray(reward, dtype=np.float64), costs, ended)
            finished_returns.append(episode_returns)
            finished_costs.append(episode_costs)

        # generalised advantage estimates of the return and of every cost; a session's last step does not bootstrap
        with torch.no_grad():
            next_value = agent.get_values(next_obs)
            advantages = torch.zeros_like(signals)
            lastgaelam = torch.zeros_like(next_value)
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = signals[t] + args.gamma * nextvalues * nextnonterminal[:, None] - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal[:, None] * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values

        # the multipliers follow each constraint, from the episodes this rollout finished
        row = curves.add(global_step, finished_returns, finished_costs)
        if row is not None:
            error = torch.tensor(row["cost_over_limit"], dtype=torch.float32) - (1.0 - args.cost_margin)
            if args.multiplier_update == "gradient":
                multipliers = torch.clamp(multipliers + args.multiplier_lr * error, min=0.0)
            else:
                cost = torch.tensor(row["cost_over_limit"], dtype=torch.float32)
                previous = cost if pid["smoothed"] is None else pid["smoothed"]
                pid["smoothed"] = args.pid_smoothing * previous + (1.0 - args.pid_smoothing) * cost
                pid["integral"] = torch.clamp(pid["integral"] + error, min=0.0)
                rising = torch.clamp(pid["smoothed"] - previous, min=0.0)
                proportional = pid["smoothed"] - (1.0 - args.cost_margin)
                multipliers = torch.clamp(
                    args.pid_kp * proportional + args.pid_ki * pid["integral"] + args.pid_kd * rising, min=0.0
                )
            for c, name in enumerate(cost_names):
                writer.add_scalar(f"costs/multiplier_{name}", float(multipliers[c]), global_step)

        b_obs = obs.reshape((-1, obs_dim))
        b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape((-1, len(nvec)))
        b_advantages = advantages.reshape(-1, 1 + num_costs)
        b_returns, b_values = returns.reshape(-1, 1 + num_costs), values.reshape(-1, 1 + num_costs)
        weights = multipliers.to(device)

        b_inds = np.arange(args.batch_size)
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                mb_adv = b_advantages[mb_inds]
                mb_adv = (mb_adv - mb_adv.mean(0)) / (mb_adv.std(0) + 1e-8)
                penalised = (mb_adv[:, 0] - mb_adv[:, 1:] @ weights) / (1.0 + weights.sum())
                pg_loss = torch.max(
                    -penalised * ratio, -penalised * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step - progress.n)
        progress.set_postfix(SPS=sps, lam=[round(float(m), 2) for m in multipliers], refresh=False)
        if args.save_model and (iteration % 20 == 0 or iteration == args.num_iterations):
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "multipliers": multipliers,
                     "pid_integral": pid["integral"]}  # fmt: skip
            if pid["smoothed"] is not None:
                state["pid_smoothed"] = pid["smoothed"]
            torch.save({**state, "iteration": iteration, "global_step": global_step}, checkpoint)
    progress.close()
    envs.close()
    wall_time = time.time() - start_time

    if args.save_model:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, str(run_dir / "model.safetensors"))
        (run_dir / "model.json").write_text(
            json.dumps(
                {
                    "algorithm": policy_name(args),
                    "learner": Path(__file__).stem,
                    "obs_dim": obs_dim,
                    "nvec": nvec,
                    "discrete": discrete,
                    "cost_names": cost_names,
                    "multipliers": multipliers.tolist(),
                    "train_wall_time_s": wall_time,
                    "args": asdict(args),
                },
                default=str,
            )  # fmt: skip
        )

    agent.eval()

    def policy(observations, env):
        with torch.no_grad():
            chosen = agent.act(torch.as_tensor(observations, device=device)).cpu().numpy()
        return chosen[:, 0] if discrete else chosen

    result = constrained.final_check(
        args.env_id, run_dir, policy, agent.joint_probabilities, policy_name(args), run_name, args, args.env
    )
    writer.close()
    if tracking is not None:
        tracking.finish()
