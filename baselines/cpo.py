"""Constrained Policy Optimization (CPO) for MEG-SplitControl-v0's constrained MDP, in one file (CleanRL's style).

    python baselines/cpo.py                                                    # CPO, 600k steps
    python baselines/cpo.py --env-id meg_gym/TabularCMDP-v0 --total-timesteps 100000 --num-envs 64 --num-steps 5 \\
        --cost-margin 0                                                        # the check against an LP optimum

Achiam, Held, Tamar & Abbeel, "Constrained Policy Optimization", ICML 2017. A trust-region method: every update
solves, for the policy parameters' step ``x``,

    max_x  g^T x    subject to    0.5 x^T H x <= delta,    b_i^T x + c_i <= 0  for every cost i,

where ``g`` is the gradient of the reward surrogate ``mean over steps of ratio * A_r`` (``ratio = pi / pi_old`` of
the taken action, ``A_r`` the reward's generalised advantage, normalised), ``H`` the Fisher matrix (the Hessian of
the mean KL divergence ``KL(pi_old || pi)`` over the rollout's states, with damping), and ``b_i`` the gradient of
cost i's surrogate, ``L * mean over steps of (ratio - 1) * A_ci`` with ``A_ci`` the cost's advantage (centred, not
scaled) and ``L`` the mean episode length, so that ``b_i^T x`` predicts the change of the episode's normalised cost
(each cost is divided by its episode limit; an episode meets a limit when its normalised cost sums to at most 1).
``c_i = J_ci - (1 - cost_margin)``, with ``J_ci`` the mean normalised cost of the episodes the rollout finished: the
step aims a margin below each limit.

Conjugate gradient (``--cg-iters``, on Fisher-vector products) gives ``H^-1 g`` and ``H^-1 b_i``; with
``q = g^T H^-1 g``, ``r = B^T H^-1 g`` and ``S = B^T H^-1 B`` (B's columns are the b_i) the problem's dual is

    min over lambda > 0, nu >= 0 of   (q - 2 r^T nu + nu^T S nu) / (2 lambda) + lambda delta - c^T nu,

and the step is ``x* = (H^-1 g - H^-1 B nu*) / lambda*``. For a given nu the best lambda is
``sqrt((q - 2 r^T nu + nu^T S nu) / (2 delta))``, which leaves a convex problem in the m multipliers nu >= 0 alone
(two on MEG-SplitControl-v0: ue_energy and deadline_miss); scipy's L-BFGS-B solves it with bounds. With one
constraint this is the paper's closed form (its Appendix 10.2, whose r is taken with the gradient of the loss -g,
hence its ``nu* = (lambda* c - r)_+ / s``); with none, the TRPO step. If no x inside the trust
region satisfies the linearised constraints (the largest ``w^T c - sqrt(2 delta w^T S w)`` over weights w on the
simplex is positive), the update is the paper's recovery step, which only decreases the violated constraints:
``x = -sqrt(2 delta / (b^T H^-1 b)) H^-1 b`` with ``b`` the sum of the violated constraints' gradients.

A backtracking line search (``x``, ``0.8 x``, ``0.8^2 x``, ...) accepts the first step whose mean KL stays within
delta, whose reward surrogate improves (not required in recovery), and whose surrogate change of each cost stays
within ``max(-c_i, 0)``, or is a decrease where the cost is already above its target; if none passes, the policy
stays. The critic (one head for the return, one per cost) regresses on the GAE returns with Adam, several epochs.

What is approximated: the objective and the constraints are linearised around the current policy (the surrogates'
first-order expansions, estimated from one rollout's samples), the KL trust region is replaced by its quadratic
expansion ``0.5 x^T H x`` with a damped Fisher matrix, ``H^-1 g`` and ``H^-1 b_i`` are conjugate-gradient solutions,
and each ``J_ci`` is a sample mean; the line search on the sampled (not linearised) surrogates and KL corrects part
of it. As in the paper, the constraints hold only approximately during training.

The costs are whatever the environment's ``info["costs"]`` holds, with its ``cost_limits``
(``meg_gym.constrained``); a Discrete action space is one head. Learning curves and the violations incurred while
training go to ``runs/{run_name}/curves.jsonl`` (and tensorboard). At the end the deterministic policy (the mode
of each head) is evaluated on the held-out test prompts -> runs/{run_name}/eval.json (the tabular CMDP: the
stochastic policy's exact return and costs against the LP optimum -> exact_check.json).
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.optimize
import torch
import torch.nn as nn
import tyro
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import constrained, evaluation
from meg_gym.config import SplitControlConfig

ALGORITHM = "cpo"


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
    """steps per environment per rollout (one session by default)"""
    gamma: float = 1.0
    """discount factor (sessions are finite; constraints are on undiscounted sums)"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    max_kl: float = 0.02
    """delta, the trust region: the largest mean KL(pi_old || pi) of one update"""
    damping: float = 0.1
    """added to the Fisher matrix (H + damping I) in the Fisher-vector products"""
    cg_iters: int = 10
    """conjugate-gradient iterations for H^-1 g and each H^-1 b_i"""
    backtrack_iters: int = 10
    """steps of the backtracking line search before the policy is left as it was"""
    backtrack_coef: float = 0.8
    """each backtracking step shrinks the step by this factor"""
    critic_learning_rate: float = 1e-3
    """the critic's Adam learning rate"""
    critic_epochs: int = 8
    """critic regression epochs per rollout"""
    num_minibatches: int = 4
    """critic minibatches per epoch"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    cost_margin: float = 0.1
    """the linearised constraints aim at (1 - margin) x each limit: the deterministic policy evaluated at the end
    and the test prompts differ from the stochastic training policy (as for PPO-Lagrangian)"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split sessions in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; the sweep's tuning sets both)"""


# Copied from baselines/ppo_lagrangian.py
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


# Copied from baselines/ppo_lagrangian.py
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


# Copied from baselines/ppo_lagrangian.py
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


def flat_grad(output: torch.Tensor, params: list[nn.Parameter], **kwargs: Any) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(output, params, **kwargs)])


def conjugate_gradient(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int) -> torch.Tensor:
    """Approximately solve ``H x = b`` for a symmetric positive-definite H known through products ``hvp(v) = H v``."""
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), r @ r
    for _ in range(iters):
        hp = hvp(p)
        alpha = rr / (p @ hp + 1e-12)
        x += alpha * p
        r -= alpha * hp
        rr_new = r @ r
        if rr_new < 1e-10:
            break
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def infeasibility(S: np.ndarray, c: np.ndarray, delta: float) -> float:
    """``max over w in the simplex of w^T c - sqrt(2 delta w^T S w)``: positive iff no x with ``0.5 x^T H x <= delta``
    satisfies every ``b_i^T x + c_i <= 0`` (the least, over the trust region, of the largest linearised constraint)."""
    m = len(c)

    def negative(w: np.ndarray) -> float:
        return -(w @ c - np.sqrt(2.0 * delta * max(w @ S @ w, 0.0)))

    starts = [np.eye(m)[i] for i in range(m)] + [np.full(m, 1.0 / m)]
    best = max(-negative(w) for w in starts)
    if m > 1:
        simplex = ({"type": "eq", "fun": lambda w: w.sum() - 1.0},)
        for w0 in starts:
            found = scipy.optimize.minimize(negative, w0, method="SLSQP", bounds=[(0.0, 1.0)] * m, constraints=simplex)
            if found.success:
                best = max(best, -float(found.fun))
    return float(best)


def solve_dual(q: float, r: np.ndarray, S: np.ndarray, c: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """(lambda*, nu*) of CPO's dual for a feasible problem: ``min over nu >= 0 of sqrt(2 delta Q(nu)) - c^T nu`` with
    ``Q(nu) = q - 2 r^T nu + nu^T S nu`` (lambda already minimised out: ``lambda = sqrt(Q(nu) / (2 delta))``)."""
    eps = 1e-12

    def dual(nu: np.ndarray) -> tuple[float, np.ndarray]:
        quad = max(q - 2.0 * r @ nu + nu @ S @ nu, eps)
        root = np.sqrt(2.0 * delta * quad)
        return root - c @ nu, delta * (2.0 * S @ nu - 2.0 * r) / root - c

    found = scipy.optimize.minimize(dual, np.zeros(len(c)), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(c))
    nu = np.maximum(found.x, 0.0)
    lam = np.sqrt(max(q - 2.0 * r @ nu + nu @ S @ nu, eps) / (2.0 * delta))
    return float(lam), nu


def policy_logits(agent: Agent, obs: torch.Tensor) -> list[torch.Tensor]:
    """Each head's log-probabilities."""
    logits = agent.actor(agent.normalise(obs))
    return [torch.log_softmax(part, dim=1) for part in torch.split(logits, agent.nvec, dim=1)]


def surrogates(
    agent: Agent,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_taken: torch.Tensor,
    adv_r: torch.Tensor,
    adv_c: torch.Tensor,
    episode_length: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the reward surrogate, each cost's predicted change of its normalised episode cost) at the current actor."""
    logp = policy_logits(agent, obs)
    taken = sum(lp.gather(1, actions[:, i : i + 1])[:, 0] for i, lp in enumerate(logp))
    ratio = torch.exp(taken - old_taken)
    return (ratio * adv_r).mean(), episode_length * ((ratio - 1.0)[:, None] * adv_c).mean(0)


def mean_kl(agent: Agent, obs: torch.Tensor, old_logp: list[torch.Tensor]) -> torch.Tensor:
    """The mean over ``obs`` of KL(pi_old || pi), summed over the heads."""
    logp = policy_logits(agent, obs)
    return sum((old.exp() * (old - new)).sum(1) for old, new in zip(old_logp, logp, strict=True)).mean()


def fisher_product(
    agent: Agent,
    params: list[nn.Parameter],
    obs: torch.Tensor,
    old_logp: list[torch.Tensor],
    damping: float,
    v: torch.Tensor,
) -> torch.Tensor:
    """``(H + damping I) v``, H the Hessian of the mean KL at pi_old (the Fisher matrix)."""
    grad_kl = flat_grad(mean_kl(agent, obs, old_logp), params, create_graph=True)
    return flat_grad(grad_kl @ v, params) + damping * v


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
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
    nvec = [int(envs.single_action_space.n)] if discrete else [int(n) for n in envs.single_action_space.nvec]
    agent = Agent(obs_dim, nvec, num_costs).to(device)
    actor_params = list(agent.actor.parameters())
    critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.critic_learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, len(nvec)), dtype=torch.long, device=device)
    signals = torch.zeros((args.num_steps, args.num_envs, 1 + num_costs), device=device)  # reward, then costs
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs, 1 + num_costs), device=device)

    start_iteration, global_step = 1, 0
    # the mean episode length (steps and count of finished episodes) and the last measured episode costs
    episode_steps, episode_count, last_costs = 0.0, 0.0, None
    checkpoint = run_dir / "checkpoint.pt"
    resumed = args.resume and checkpoint.exists()
    if resumed:
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        agent.load_state_dict(state["agent"])
        critic_optimizer.load_state_dict(state["critic_optimizer"])
        episode_steps, episode_count = float(state["episode_steps"]), float(state["episode_count"])
        last_costs = state["last_costs"].cpu().numpy() if "last_costs" in state else None
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
    lengths = np.zeros(args.num_envs)

    for iteration in range(start_iteration, args.num_iterations + 1):
        finished_returns, finished_costs = [], []

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            agent.update_obs_stats(next_obs)
            with torch.no_grad():
                action, _, _, value = agent.get_action_and_value(next_obs)
                values[step] = value
            actions[step] = action
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
            lengths += 1
            episode_steps, episode_count = episode_steps + lengths[ended].sum(), episode_count + ended.sum()
            lengths[ended] = 0

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

        # J_c of the rollout's policy: its finished episodes' mean normalised costs (else the last measured, else the
        # mean step cost times the episode length); L, the mean episode length, turns per-step means into episodes
        row = curves.add(global_step, finished_returns, finished_costs)
        episode_length = episode_steps / episode_count if episode_count else float(lengths.mean())
        if row is not None:
            last_costs = np.asarray(row["cost_over_limit"], dtype=np.float64)
        episode_costs = last_costs
        if episode_costs is None:
            episode_costs = signals[:, :, 1:].reshape(-1, num_costs).mean(0).cpu().numpy() * episode_length
        c = episode_costs - (1.0 - args.cost_margin)

        b_obs = obs.reshape((-1, obs_dim))
        b_actions = actions.reshape((-1, len(nvec)))
        b_advantages = advantages.reshape(-1, 1 + num_costs)
        b_returns = returns.reshape(-1, 1 + num_costs)
        adv_r = (b_advantages[:, 0] - b_advantages[:, 0].mean()) / (b_advantages[:, 0].std() + 1e-8)
        adv_c = b_advantages[:, 1:] - b_advantages[:, 1:].mean(0)  # centred, in the units of the normalised cost

        # the policy update: pi_old is the actor as it is now, with the observation statistics as they are now
        with torch.no_grad():
            old_logp = [lp.detach() for lp in policy_logits(agent, b_obs)]
            old_taken = sum(lp.gather(1, b_actions[:, i : i + 1])[:, 0] for i, lp in enumerate(old_logp))

        batch = (agent, b_obs, b_actions, old_taken, adv_r, adv_c, episode_length)
        fisher_vector = functools.partial(fisher_product, agent, actor_params, b_obs, old_logp, args.damping)
        surr_r, surr_c = surrogates(*batch)
        g = flat_grad(surr_r, actor_params, retain_graph=True)
        B = torch.stack([flat_grad(surr_c[i], actor_params, retain_graph=i < num_costs - 1) for i in range(num_costs)])
        hinv_g = conjugate_gradient(fisher_vector, g, args.cg_iters)
        hinv_b = torch.stack([conjugate_gradient(fisher_vector, B[i], args.cg_iters) for i in range(num_costs)])
        q = float(g @ hinv_g)
        r = (B @ hinv_g).double().cpu().numpy()
        S = (B @ hinv_b.T).double().cpu().numpy()
        S = 0.5 * (S + S.T)

        recovery = num_costs > 0 and infeasibility(S, c, args.max_kl) > 0.0
        lam, nu = float(np.sqrt(max(q, 1e-12) / (2.0 * args.max_kl))), np.zeros(num_costs)
        if recovery:
            # no step within the trust region satisfies the linearised constraints: decrease the violated ones
            violated = torch.tensor(c > 0.0, dtype=torch.float32, device=device)
            hinv_v = violated @ hinv_b
            full_step = -torch.sqrt(2.0 * args.max_kl / torch.clamp(hinv_v @ (violated @ B), min=1e-12)) * hinv_v
        else:
            if num_costs > 0:
                lam, nu = solve_dual(q, r, S, c, args.max_kl)
            full_step = (hinv_g - torch.tensor(nu, dtype=torch.float32, device=device) @ hinv_b) / lam

        # backtracking line search on the sampled surrogates and KL
        old_params = nn.utils.parameters_to_vector(actor_params).detach().clone()
        allowed = torch.tensor(np.where(c > 0.0, 0.0, -c), dtype=torch.float32, device=device)
        accepted, kl = 0.0, torch.zeros(())
        with torch.no_grad():
            for k in range(args.backtrack_iters):
                fraction = args.backtrack_coef**k
                nn.utils.vector_to_parameters(old_params + fraction * full_step, actor_params)
                new_r, new_c = surrogates(*batch)
                kl = mean_kl(agent, b_obs, old_logp)
                if kl <= args.max_kl and (recovery or new_r > surr_r) and bool((new_c <= allowed).all()):
                    accepted = fraction
                    break
            else:
                nn.utils.vector_to_parameters(old_params, actor_params)
                kl = torch.zeros(())

        # the critic: regression of every head on its GAE return
        b_inds = np.arange(args.batch_size)
        for _epoch in range(args.critic_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                v_loss = 0.5 * ((agent.get_values(b_obs[mb_inds]) - b_returns[mb_inds]) ** 2).mean()
                critic_optimizer.zero_grad()
                v_loss.backward()
                critic_optimizer.step()

        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/approx_kl", float(kl), global_step)
        writer.add_scalar("cpo/step_fraction", accepted, global_step)
        writer.add_scalar("cpo/recovery", float(recovery), global_step)
        writer.add_scalar("cpo/lambda", lam, global_step)
        for i, name in enumerate(cost_names):
            writer.add_scalar(f"cpo/nu_{name}", float(nu[i]), global_step)
            writer.add_scalar(f"cpo/c_{name}", float(c[i]), global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step - progress.n)
        progress.set_postfix(
            SPS=sps, kl=round(float(kl), 4), step=round(accepted, 2), rec=int(recovery), c=np.round(c, 2).tolist(),
            refresh=False,
        )  # fmt: skip
        if args.save_model and (iteration % 20 == 0 or iteration == args.num_iterations):
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {"agent": agent.state_dict(), "critic_optimizer": critic_optimizer.state_dict(),
                     "episode_steps": float(episode_steps), "episode_count": float(episode_count)}  # fmt: skip
            if last_costs is not None:
                state["last_costs"] = torch.tensor(last_costs)
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
                    "algorithm": ALGORITHM,
                    "learner": Path(__file__).stem,
                    "obs_dim": obs_dim,
                    "nvec": nvec,
                    "discrete": discrete,
                    "cost_names": cost_names,
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
        args.env_id, run_dir, policy, agent.joint_probabilities, ALGORITHM, run_name, args, args.env
    )
    writer.close()
    if tracking is not None:
        tracking.finish()
