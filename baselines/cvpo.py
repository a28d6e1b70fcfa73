"""CVPO, Constrained Variational Policy Optimization, for MEG-SplitControl-v0's constrained MDP, in one file.

    python baselines/cvpo.py                                                  # CVPO, 600k steps
    python baselines/cvpo.py --env-id meg_gym/TabularCMDP-v0 --total-timesteps 100000 --num-envs 32 \\
        --learning-starts 1000 --tau 0.05 --cost-margin 0                     # the check against an LP optimum

Liu, Cen, Isenbaev, Liu, Wu, Li & Zhao, "Constrained Variational Policy Optimization for Safe Reinforcement
Learning", ICML 2022: safe RL as probabilistic inference, solved by an EM loop. It is the learner the MEG anchor
work (LowLatencyMEG, arXiv 2407.07245) trains. This implementation is off-policy over the JOINT discrete action:
the MultiDiscrete action is flattened into ``prod(nvec)`` joint actions (100 on MEG-SplitControl-v0, in the
row-major order of ``np.ravel_multi_index``; a Discrete(n) action is n joint actions), so every expectation over
actions below is an exact sum, with no sampling.

Signals: the reward times ``reward_scale``; each cost of ``info["costs"]`` divided by its episode limit (a session
meets a limit when its normalised cost sums to at most 1). Observations go through a running mean/variance
normaliser kept in the model's buffers.

Critics (trained every update on a replay batch, same-step autoreset: the ended episodes' ``final_obs`` are the
next states, and a terminal step does not bootstrap): two reward critics ``Q_r1, Q_r2 (s, .)`` and one cost critic
per constraint ``Q_ci(s, .)``, each a vector over the joint actions, regressed on the expected (SARSA) targets of
the current policy with slowly moving (Polyak) target networks,

    y_r  = r  + gamma (1 - terminated) sum_a' pi(a'|s') min(Q_r1', Q_r2')(s', a')
    y_ci = ci + gamma (1 - terminated) sum_a' pi(a'|s') Q_ci'(s', a').

E-step (exact over the joint actions): on the batch's states, with the target critics, ``pi_old`` the policy before
this update and the advantages ``A_r = Q_r - V_r``, ``A_ci = Q_ci - V_ci`` (``V = sum_a pi_old Q``), the
non-parametric policy is

    q(a|s) = pi_old(a|s) exp((A_r(s, a) - sum_i lam_i A_ci(s, a)) / eta) / Z(s),

the solution of ``max_q mean_s E_q[A_r]`` subject to ``mean_s KL(q || pi_old) <= kl_epsilon`` and
``mean_s E_q[A_ci] <= b_i`` for every constraint i. Its duals ``eta > 0, lam >= 0`` minimise the convex dual

    g(eta, lam) = eta kl_epsilon + sum_i lam_i b_i + eta mean_s log sum_a pi_old(a|s) exp((A_r - sum_i lam_i A_ci) / eta)

(put the maximiser q back in the Lagrangian: ``E_q[A] - eta KL(q || pi_old) = eta log Z``), whose gradients are
``dg/deta = kl_epsilon + mean_s log Z - mean_s E_q[A] / eta`` and ``dg/dlam_i = b_i - mean_s E_q[A_ci]``; scipy's
L-BFGS-B minimises it within bounds (``eta`` in [1e-6, 1e4], ``lam_i`` in [0, dual_max]), warm-started from the
last update's duals. When a cost target cannot be met within the KL ball the dual is unbounded below and ``lam_i``
rises to ``dual_max``: q then lowers that cost as fast as the trust region allows (the recovery step).

The cost targets ``b_i`` (``--cost-target``), in normalised units with ``d = 1 - cost_margin`` (the episode limit,
a margin below it):

* ``linearised`` (default): the performance-difference lemma, with ``gamma = 1`` and episodes of length T whose
  states fill the buffer evenly over time, gives the new policy's episode cost to first order as
  ``J_ci(q) ~= J_ci(pi_old) + T mean_s E_q[A_ci(s, a)]``. So ``b_i = (d - J_ci(pi_old)) / T``, with
  ``J_ci(pi_old) = mean V_ci(s_0)`` over recent initial states (a buffer of the observations that began an
  episode), and T the mean length of the finished episodes. This constrains the quantity the limit is on, the
  expected episode cost. A per-state threshold on ``mean_s E_q[Q_ci]`` weights a cost paid at step t by
  ``(t + 1) / T`` (it appears in the cost-to-go of every earlier state), so with the remaining requests in the
  observation a policy could pay early costs cheaply and end above the episode limit.
* ``per-state``: the conversion of the paper's code (FSRL) of an episode limit into a Q threshold,
  ``mean_s E_q[Q_ci] <= d (1 - gamma^T) / ((1 - gamma) T)`` (``= d`` at ``gamma = 1``), i.e. ``b_i`` is that
  threshold less ``mean_s V_ci``. Kept for comparison.

M-step: the policy network fits q by weighted maximum likelihood under a trust region, minimising
``-mean_s sum_a q(a|s) log pi_theta(a|s) + alpha mean_s KL(pi_old || pi_theta)`` by ``mstep_iterations`` Adam
steps, with the Lagrange multiplier alpha taking a gradient-ascent step on the trust-region constraint after each,
``log alpha <- log alpha + alpha_lr (KL / mstep_kl_epsilon - 1)`` (so alpha grows while the KL is above
``mstep_kl_epsilon`` and decays below it). The policy's learning rate decays linearly to 0 (``--anneal-lr``), so
the final policy averages the last E-steps' targets instead of following the latest one (without it the last
iterate on the tabular CMDP ended 15% below the optimum's return, between two cost-binding vertices).

Two (or any number of) constraints: one cost critic and one dual variable ``lam_i`` each, all solved jointly in the
one E-step dual (L-BFGS-B over ``(eta, lam_1, ..., lam_k)``); q is tilted by the sum ``sum_i lam_i A_ci``.

The costs are whatever the environment's ``info["costs"]`` holds, with its ``cost_limits``
(``meg_gym.constrained``). Learning curves and training-time violations go to ``runs/{run_name}/curves.jsonl``
(one line per ``num_steps`` vector steps; and tensorboard, with the E-step's duals, its KL and cost slack). At
the end the deterministic policy (the most probable joint action) is evaluated on the held-out test prompts ->
runs/{run_name}/eval.json (MEG) or the stochastic policy exactly -> exact_check.json (the tabular CMDP).
"""

from __future__ import annotations

import copy
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
import torch.nn.functional as F
import tyro
from scipy.optimize import minimize
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import constrained, evaluation
from meg_gym.config import SplitControlConfig

ALGORITHM = "cvpo"


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
    num_envs: int = 64
    """parallel sessions (one native vector env)"""
    num_steps: int = 32
    """vector steps between learning-curve lines (and checkpoints every 20 of these); one session by default"""
    buffer_size: int = 200_000
    """replay buffer capacity (transitions)"""
    batch_size: int = 512
    """transitions per update (critics, E-step and M-step)"""
    learning_starts: int = 4096
    """environment steps before the first update"""
    updates_per_step: int = 1
    """updates per vector step (num_envs transitions)"""
    hidden_size: int = 128
    """units of the two hidden layers of every network"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy (M-step)"""
    anneal_lr: bool = True
    """linearly anneal the policy's learning rate to 0 (the last policy then averages the last E-steps' targets
    instead of following the latest one)"""
    gamma: float = 1.0
    """discount factor (sessions are finite and the observation holds the time left; limits are on plain sums)"""
    tau: float = 0.01
    """Polyak step of the target critics"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    kl_epsilon: float = 0.02
    """E-step: bound on mean_s KL(q || pi_old)"""
    mstep_kl_epsilon: float = 0.01
    """M-step: trust region on mean_s KL(pi_old || pi_theta), held by the multiplier alpha"""
    mstep_iterations: int = 1
    """M-step: Adam steps of the policy on each E-step's q"""
    alpha_lr: float = 0.05
    """M-step: gradient-ascent step of log alpha on (KL / mstep_kl_epsilon - 1)"""
    initial_alpha: float = 1.0
    """M-step: the initial trust-region multiplier"""
    dual_max: float = 1e4
    """upper bound of each cost dual lam_i in the E-step"""
    cost_margin: float = 0.1
    """the E-step aims at (1 - margin) x each limit: the deterministic policy evaluated at the end and the test
    prompts differ from the stochastic training policy"""
    cost_target: Literal["linearised", "per-state"] = "linearised"
    """E-step cost target: first-order change of the episode cost (performance difference), or FSRL's per-state
    Q threshold d (1 - gamma^T) / ((1 - gamma) T)"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split sessions in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; the sweep's tuning sets both)"""


def mlp(obs_dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


class Critic(nn.Module):
    """Two reward critics and one cost critic per constraint, each a vector over the joint actions."""

    def __init__(self, obs_dim: int, n_actions: int, num_costs: int, hidden: int):
        super().__init__()
        self.n_actions, self.num_costs = n_actions, num_costs
        self.reward1 = mlp(obs_dim, hidden, n_actions)
        self.reward2 = mlp(obs_dim, hidden, n_actions)
        self.cost = mlp(obs_dim, hidden, num_costs * n_actions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, n), (batch, n), (batch, costs, n)."""
        return self.reward1(x), self.reward2(x), self.cost(x).view(-1, self.num_costs, self.n_actions)


class Agent(nn.Module):
    """Observation normaliser, the policy over joint actions, and the critics."""

    def __init__(self, obs_dim: int, nvec: list[int], num_costs: int, hidden: int = 128):
        super().__init__()
        self.nvec = list(nvec)
        self.n_actions = int(np.prod(nvec))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.register_buffer("obs_count", torch.tensor(1e-4))
        self.actor = mlp(obs_dim, hidden, self.n_actions)
        nn.init.zeros_(self.actor[-1].weight)  # start from the uniform policy over joint actions
        nn.init.zeros_(self.actor[-1].bias)
        self.critic = Critic(obs_dim, self.n_actions, num_costs, hidden)

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

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) over the joint actions, from normalised observations ``x``."""
        return F.log_softmax(self.actor(x), dim=1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """Joint action indices drawn from the stochastic policy."""
        return torch.multinomial(self.log_probs(self.normalise(obs)).exp(), 1)[:, 0]

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The most probable joint action, as MultiDiscrete actions ``(batch, len(nvec))``."""
        joint = self.actor(self.normalise(obs)).argmax(1).cpu().numpy()
        return torch.as_tensor(np.stack(np.unravel_index(joint, self.nvec), axis=1))

    def joint_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The stochastic policy's probability of every joint action, ``(batch, prod(nvec))``."""
        with torch.no_grad():
            x = self.normalise(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.obs_mean.device))
            return self.log_probs(x).exp().cpu().numpy().astype(np.float64)


def load_policy(run_dir: str | Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """The deterministic policy of a run saved with --save-model: ``policy(obs, env) -> actions (num_envs, 3)``.

    Reads only the run's model.json and model.safetensors (no stored code runs).
    """
    meta, state = evaluation.load_saved_run(run_dir, "model.safetensors")
    num_costs = len(meta.get("cost_names", ("ue_energy", "deadline_miss")))
    agent = Agent(int(meta["obs_dim"]), meta["nvec"], num_costs, int(meta.get("hidden_size", 128)))
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


def solve_dual(
    log_pi: np.ndarray,
    adv_r: np.ndarray,
    adv_c: np.ndarray,
    kl_epsilon: float,
    targets: np.ndarray,
    x0: np.ndarray,
    dual_max: float,
) -> np.ndarray:
    """The E-step's duals ``(eta, lam_1..k)`` minimising g (module docstring) by L-BFGS-B.

    ``log_pi`` (batch, n): log pi_old; ``adv_r`` (batch, n); ``adv_c`` (batch, k, n); ``targets`` (k,): the b_i.
    """

    def dual(x: np.ndarray) -> tuple[float, np.ndarray]:
        eta, lam = x[0], x[1:]
        adv = adv_r - np.einsum("k,bkn->bn", lam, adv_c)
        z = log_pi + adv / eta
        top = z.max(1, keepdims=True)
        w = np.exp(z - top)
        total = w.sum(1)
        q = w / total[:, None]
        log_z = top[:, 0] + np.log(total)
        value = eta * kl_epsilon + lam @ targets + eta * log_z.mean()
        d_eta = kl_epsilon + log_z.mean() - (q * adv).sum(1).mean() / eta
        d_lam = targets - np.einsum("bn,bkn->k", q, adv_c) / len(q)
        return float(value), np.concatenate([[d_eta], d_lam])

    bounds = [(1e-6, 1e4)] + [(0.0, dual_max)] * adv_c.shape[1]
    result = minimize(dual, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 100})
    return np.asarray(result.x, dtype=np.float64)


def e_step_distribution(log_pi: torch.Tensor, adv_r: torch.Tensor, adv_c: torch.Tensor, duals: np.ndarray):
    """q(a|s) of the duals ``(eta, lam)``: pi_old exp((A_r - sum_i lam_i A_ci) / eta), normalised."""
    lam = torch.as_tensor(duals[1:], dtype=adv_r.dtype)
    return torch.softmax(log_pi + (adv_r - torch.einsum("k,bkn->bn", lam, adv_c)) / float(duals[0]), dim=1)


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.check_tuning_splits(args.train_split, args.validation_episodes)
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
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
    nvec = [int(envs.single_action_space.n)] if discrete else [int(n) for n in envs.single_action_space.nvec]
    agent = Agent(obs_dim, nvec, num_costs, args.hidden_size).to(device)
    target_critic = copy.deepcopy(agent.critic)
    critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.critic_lr)
    policy_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.policy_lr)
    log_alpha = float(np.log(args.initial_alpha))
    duals = np.concatenate([[1.0], np.zeros(num_costs)])  # eta, lam_1..k (warm start of the E-step)
    cost_goal = 1.0 - args.cost_margin  # d, in normalised units

    # the replay buffer (raw observations; normalised when sampled) and the observations that began an episode
    capacity = args.buffer_size
    buf = {
        "obs": torch.zeros((capacity, obs_dim)),
        "next_obs": torch.zeros((capacity, obs_dim)),
        "action": torch.zeros(capacity, dtype=torch.long),
        "reward": torch.zeros(capacity),
        "costs": torch.zeros((capacity, num_costs)),
        "terminated": torch.zeros(capacity),
    }
    init_capacity = 4096
    init_obs = torch.zeros((init_capacity, obs_dim))
    pointers = {"pos": 0, "size": 0, "init_pos": 0, "init_size": 0, "episodes": 0, "length_sum": 0.0}

    def add_initial(observations: torch.Tensor) -> None:
        for row in observations:
            init_obs[pointers["init_pos"]] = row
            pointers["init_pos"] = (pointers["init_pos"] + 1) % init_capacity
            pointers["init_size"] = min(pointers["init_size"] + 1, init_capacity)

    start_iteration, global_step, num_updates = 1, 0, 0
    num_iterations = max(1, args.total_timesteps // (args.num_envs * args.num_steps))
    checkpoint = run_dir / "checkpoint.pt"
    resumed = args.resume and checkpoint.exists()
    if resumed:
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        agent.load_state_dict(state["agent"])
        target_critic.load_state_dict(state["target_critic"])
        critic_optimizer.load_state_dict(state["critic_optimizer"])
        policy_optimizer.load_state_dict(state["policy_optimizer"])
        log_alpha, duals = float(state["log_alpha"]), state["duals"].double().numpy()
        size = int(state["buffer_size"])
        for key, value in buf.items():
            value[:size] = state[f"buffer_{key}"][:capacity]
        pointers.update(pos=size % capacity, size=min(size, capacity))
        add_initial(state["init_obs"])
        pointers.update(episodes=int(state["episodes"]), length_sum=float(state["length_sum"]))
        start_iteration, global_step = int(state["iteration"]) + 1, int(state["global_step"])
        num_updates = int(state["num_updates"])
        print(f"resumed {run_name} at iteration {start_iteration}, step {global_step}")
    curves = constrained.TrainingCurves(run_dir, writer, cost_names, resume=resumed)
    start_time, start_step = time.time(), global_step
    progress = tqdm(
        total=num_iterations * args.num_steps * args.num_envs, initial=global_step, unit="step", mininterval=2.0
    )
    next_obs_np, _ = envs.reset(seed=args.seed + 1000 * (start_iteration - 1))
    next_obs = torch.tensor(next_obs_np, dtype=torch.float32)
    add_initial(next_obs)
    tracker = constrained.EpisodeTracker(args.num_envs, num_costs)
    lengths = np.zeros(args.num_envs)
    stats: dict[str, float] = {}

    def update() -> None:
        """One update: the critics' TD step, the exact E-step, the M-step and the target critics' Polyak step."""
        global log_alpha, duals
        idx = torch.randint(0, pointers["size"], (args.batch_size,))
        x, x_next = agent.normalise(buf["obs"][idx].to(device)), agent.normalise(buf["next_obs"][idx].to(device))
        action = buf["action"][idx].to(device)
        reward, costs = buf["reward"][idx].to(device), buf["costs"][idx].to(device)
        alive = 1.0 - buf["terminated"][idx].to(device)

        # critics: expected TD targets under the current policy
        with torch.no_grad():
            pi_next = agent.log_probs(x_next).exp()
            r1, r2, c = target_critic(x_next)
            y_r = reward + args.gamma * alive * (pi_next * torch.min(r1, r2)).sum(1)
            y_c = costs + args.gamma * alive[:, None] * (pi_next[:, None, :] * c).sum(2)
        q1, q2, qc = agent.critic(x)
        taken = action[:, None]
        critic_loss = (
            F.mse_loss(q1.gather(1, taken)[:, 0], y_r)
            + F.mse_loss(q2.gather(1, taken)[:, 0], y_r)
            + F.mse_loss(qc.gather(2, taken[:, None, :].expand(-1, num_costs, 1))[:, :, 0], y_c) * num_costs
        )
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()

        # E-step: exact over the joint actions, duals by L-BFGS-B
        with torch.no_grad():
            log_pi = agent.log_probs(x)
            pi = log_pi.exp()
            r1, r2, c = target_critic(x)
            q_r = torch.min(r1, r2)
            adv_r = q_r - (pi * q_r).sum(1, keepdim=True)
            v_c = (pi[:, None, :] * c).sum(2)
            adv_c = c - v_c[:, :, None]
            if args.cost_target == "linearised":
                x0 = agent.normalise(init_obs[torch.randint(0, pointers["init_size"], (256,))].to(device))
                pi0 = agent.log_probs(x0).exp()
                episode_cost = (pi0[:, None, :] * target_critic(x0)[2]).sum(2).mean(0)
                horizon = pointers["length_sum"] / max(pointers["episodes"], 1) if pointers["episodes"] else 1.0
                targets = (cost_goal - episode_cost) / max(horizon, 1.0)
            else:
                horizon = pointers["length_sum"] / max(pointers["episodes"], 1) if pointers["episodes"] else 1.0
                scale = 1.0 if args.gamma == 1.0 else (1 - args.gamma**horizon) / ((1 - args.gamma) * horizon)
                episode_cost = v_c.mean(0)
                targets = cost_goal * scale - v_c.mean(0)
        targets_np = targets.cpu().double().numpy()
        duals = solve_dual(
            log_pi.cpu().double().numpy(),
            adv_r.cpu().double().numpy(),
            adv_c.cpu().double().numpy(),
            args.kl_epsilon,
            targets_np,
            duals,
            args.dual_max,
        )
        q = e_step_distribution(log_pi.double(), adv_r.double(), adv_c.double(), duals).float()

        # M-step: weighted maximum likelihood under the trust region KL(pi_old || pi_theta) <= mstep_kl_epsilon
        for _ in range(args.mstep_iterations):
            log_new = agent.log_probs(x)
            kl = (pi * (log_pi - log_new)).sum(1).mean()
            policy_loss = -(q * log_new).sum(1).mean() + float(np.exp(log_alpha)) * kl
            policy_optimizer.zero_grad()
            policy_loss.backward()
            policy_optimizer.step()
            log_alpha = float(np.clip(log_alpha + args.alpha_lr * (kl.item() / args.mstep_kl_epsilon - 1.0), -10, 5))

        with torch.no_grad():
            for p, tp in zip(agent.critic.parameters(), target_critic.parameters(), strict=True):
                tp.mul_(1.0 - args.tau).add_(p, alpha=args.tau)
            q_kl = (q * (torch.log(q.clamp_min(1e-30)) - log_pi)).sum(1).mean()
            q_cost = (q[:, None, :] * adv_c).sum(2).mean(0)
        stats.update(
            critic_loss=critic_loss.item(),
            policy_loss=policy_loss.item(),
            mstep_kl=kl.item(),
            alpha=float(np.exp(log_alpha)),
            eta=float(duals[0]),
            estep_kl=q_kl.item(),
            horizon=horizon,
        )
        for k, name in enumerate(cost_names):
            stats[f"lam_{name}"] = float(duals[1 + k])
            stats[f"estep_cost_slack_{name}"] = float(targets_np[k] - q_cost[k].item())
            stats[f"value_episode_cost_{name}"] = float(episode_cost[k])

    for iteration in range(start_iteration, num_iterations + 1):
        if args.anneal_lr:
            policy_optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.policy_lr
        finished_returns, finished_costs = [], []
        for _step in range(args.num_steps):
            global_step += args.num_envs
            agent.update_obs_stats(next_obs.to(device))
            with torch.no_grad():
                joint = agent.sample(next_obs.to(device)).cpu()
            env_action = np.stack(np.unravel_index(joint.numpy(), nvec), axis=1)
            next_obs_np, reward, terminations, truncations, infos = envs.step(
                env_action[:, 0] if discrete else env_action
            )
            costs = constrained.step_costs(infos, cost_names, args.num_envs) / limits
            ended = np.logical_or(terminations, truncations)
            real_next = np.array(next_obs_np, dtype=np.float32, copy=True)
            if ended.any():  # same-step autoreset: the ended episodes' last observation is in final_obs
                for i in np.flatnonzero(ended):
                    real_next[i] = infos["final_obs"][i]
            rows = (pointers["pos"] + np.arange(args.num_envs)) % capacity
            buf["obs"][rows] = next_obs
            buf["next_obs"][rows] = torch.as_tensor(real_next)
            buf["action"][rows] = joint
            buf["reward"][rows] = torch.as_tensor(reward * args.reward_scale, dtype=torch.float32)
            buf["costs"][rows] = torch.as_tensor(costs, dtype=torch.float32)
            buf["terminated"][rows] = torch.as_tensor(terminations, dtype=torch.float32)
            pointers["pos"] = int((pointers["pos"] + args.num_envs) % capacity)
            pointers["size"] = min(pointers["size"] + args.num_envs, capacity)

            lengths += 1
            if ended.any():
                pointers["episodes"] += int(ended.sum())
                pointers["length_sum"] += float(lengths[ended].sum())
                lengths[ended] = 0
            next_obs = torch.tensor(next_obs_np, dtype=torch.float32)
            if ended.any():
                add_initial(next_obs[torch.as_tensor(ended)])
            episode_returns, episode_costs = tracker.step(np.asarray(reward, dtype=np.float64), costs, ended)
            finished_returns.append(episode_returns)
            finished_costs.append(episode_costs)

            if global_step >= args.learning_starts and pointers["size"] >= args.batch_size:
                for _ in range(args.updates_per_step):
                    update()
                    num_updates += 1

        curves.add(global_step, finished_returns, finished_costs)
        for key, value in stats.items():
            group = "estep" if key.startswith(("lam_", "eta", "estep", "value_")) else "losses"
            writer.add_scalar(f"{group}/{key}", value, global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step - progress.n)
        progress.set_postfix(
            SPS=sps, eta=round(float(duals[0]), 3), lam=[round(float(m), 2) for m in duals[1:]], refresh=False
        )
        if args.save_model and (iteration % 20 == 0 or iteration == num_iterations):
            run_dir.mkdir(parents=True, exist_ok=True)
            size = pointers["size"]
            order = (np.arange(size) + (pointers["pos"] if size == capacity else 0)) % capacity
            state = {
                "agent": agent.state_dict(),
                "target_critic": target_critic.state_dict(),
                "critic_optimizer": critic_optimizer.state_dict(),
                "policy_optimizer": policy_optimizer.state_dict(),
                "log_alpha": torch.tensor(log_alpha),
                "duals": torch.as_tensor(duals),
                "buffer_size": size,
                **{f"buffer_{key}": value[torch.as_tensor(order)].clone() for key, value in buf.items()},
                "init_obs": init_obs[: pointers["init_size"]].clone(),
                "episodes": pointers["episodes"],
                "length_sum": pointers["length_sum"],
                "num_updates": num_updates,
                "iteration": iteration,
                "global_step": global_step,
            }
            torch.save(state, checkpoint)
    progress.close()
    envs.close()
    wall_time = time.time() - start_time

    if args.save_model:
        from safetensors.torch import save_file

        run_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, str(run_dir / "model.safetensors"))
        (run_dir / "model.json").write_text(
            json.dumps(
                {
                    "algorithm": ALGORITHM,
                    "learner": Path(__file__).stem,
                    "obs_dim": obs_dim,
                    "nvec": nvec,
                    "discrete": discrete,
                    "cost_names": cost_names,
                    "hidden_size": args.hidden_size,
                    "duals": duals.tolist(),
                    "train_wall_time_s": wall_time,
                    "args": asdict(args),
                },
                default=str,
            )
        )

    agent.eval()

    def policy(observations, env):
        with torch.no_grad():
            chosen = agent.act(torch.as_tensor(observations, device=device)).cpu().numpy()
        return chosen[:, 0] if discrete else chosen

    result = constrained.final_check(
        args.env_id, run_dir, policy, agent.joint_probabilities, ALGORITHM, run_name, args, args.env
    )
    writer.close()
    if tracking is not None:
        tracking.finish()
