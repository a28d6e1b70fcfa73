"""SAC-Lagrangian with discrete soft actor-critic for MEG-SplitControl-v0's constrained MDP, in one file (CleanRL's
style, our own code).

    python baselines/sac_lagrangian.py                                       # SAC-Lagrangian, 600k steps
    python baselines/sac_lagrangian.py --env-id meg_gym/TabularCMDP-v0 --total-timesteps 40000 --num-envs 32 \\
        --gradient-steps 4 --cost-margin 0 --learning-starts 1000 --multiplier-lr 0.05 --target-entropy-scale 0.05 \\
        --alpha 0.02 --tau 0.02 --q-lr 1e-3 --policy-lr 1e-3    # the check against an LP optimum (~45 s CPU)

On the tabular CMDP (3 actions, 5 steps) those flags give 2.963, 2.988 and 3.012 (LP optimum 2.975) with every
cost within 1.2% of its limit for seeds 1, 2 and 3: 32 sessions per dual step keep the multipliers' noise low, and
a target entropy of 0.05 x log 3 keeps the entropy's bias on the return small; with 16 sessions per dual step and
a target of 0.1 x log 3 (or 0.03 x log 3 with 16 sessions) one seed in two or three ended 5-7% below the optimum.

Off-policy soft actor-critic (Haarnoja, Zhou, Abbeel & Levine, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor", ICML 2018; Haarnoja et al., "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905, 2018) in the discrete form of Christodoulou, "Soft Actor-Critic for Discrete
Action Settings" (arXiv 1910.07207, 2019), with the cost constraints handled by a Lagrangian as in the
SAC-Lagrangian of Ha, Xu, Tan, Levine & Tan, "Learning to Walk in the Real World with Minimal Human Effort"
(CoRL 2020).

Actions. A MultiDiscrete action (MEG-SplitControl-v0: split step x scheme x energy level, nvec [4, 5, 5]) is
flattened into ``prod(nvec)`` joint actions (100) with ``np.ravel_multi_index`` (row-major, the order of
``constrained.joint_probabilities``) and back with ``np.unravel_index``; a Discrete(n) action stays n joint
actions. The policy is ONE categorical over the joint actions (not a product of heads), so it can represent any
stochastic policy, and every expectation over actions below is an exact sum over the joint actions.

Signals. Each step's reward is multiplied by ``reward_scale``; each cost of ``info["costs"]`` is divided by its
episode limit (a session meets a limit when its normalised cost sums to at most 1).

Networks. The critics output a vector over the joint actions: twin reward critics ``Q1, Q2(s, .)`` and one cost
critic network with one head per constraint, ``Qc_i(s, .)``, each with a Polyak-averaged target
(``theta' <- tau theta + (1 - tau) theta'``). With ``pi(.|s')`` the current policy's probabilities, the soft
targets are exact expectations (no sampled next action):

    y_r = r + gamma (1 - term) sum_a' pi(a'|s') [min(Q1', Q2')(s', a') - alpha log pi(a'|s')]
    y_ci = c_i + gamma (1 - term) sum_a' pi(a'|s') Qc_i'(s', a')

(``term``: the session terminated; a truncation would bootstrap). The critics minimise the squared errors
``(Q1(s,a) - y_r)^2 + (Q2(s,a) - y_r)^2 + sum_i (Qc_i(s,a) - y_ci)^2``. The actor minimises

    E_s sum_a pi(a|s) [alpha log pi(a|s) - (min(Q1, Q2)(s, a) - sum_i lam_i Qc_i(s, a)) / (1 + sum_i lam_i)]

(the Lagrangian's Q-part is divided by ``1 + sum lam``, not the entropy term: it stays a convex combination of
``Q_r`` and ``-Qc_i``, bounded however large the multipliers grow, and the automatic temperature absorbs the change
of scale; with lam = 0 it is plain discrete SAC). The temperature follows the discrete SAC rule
``min_alpha E_s sum_a pi(a|s) [-alpha (log pi(a|s) + H_target)]`` with ``H_target = target_entropy_scale x
log(n_joint_actions)``. Christodoulou used 0.98 of the maximum entropy, which keeps the policy near uniform; a
constrained optimum is nearly deterministic (a CMDP with k binding constraints has an optimal policy that mixes in
at most k states), so the default is 0.1 x log(100) = 0.46 nats on MEG-SplitControl-v0: enough randomness to
explore and to mix between actions where the constraints bind, little enough to sit close to the constrained
optimum. The deterministic policy (the mode of ``pi``) is what is evaluated on the test prompts.

Two constraints. Each constraint has its own cost-critic head and its own multiplier ``lam_i``. The multipliers
take dual ascent steps in episode units, as the SAC-Lagrangian of Ha et al. and the safe-RL libraries do: whenever
at least ``num_envs`` training sessions have finished since the last step (one vector of sessions on MEG, where all
sessions end together),

    lam_i <- max(0, lam_i + multiplier_lr (J_ci - (1 - cost_margin)))

with ``J_ci`` the mean normalised episode cost_i of those sessions, so each multiplier prices its own constraint
and one limit's slack is not spent on the other. The multipliers stay at their initial values while the replay
memory is filled with uniform random actions (``learning_starts``). On MEG the reward critic's values are tens
(32 requests x ~2.4 scaled dB) while a normalised cost sums to ~1 per session, so the multipliers needed are tens;
the default ``multiplier_lr`` 0.5 gets there within a few dozen dual steps.

Discount. gamma = 1: sessions are finite (32 requests on MEG, 5 steps on the tabular CMDP), the observation says
how many requests are left (the time step on the tabular CMDP), so undiscounted values are well defined, and the
constraints are on undiscounted session sums -- a discounted cost critic would understate the late requests'
energy that the multipliers are pricing.

Replay and normalisation. A numpy replay memory over the vector env (64 sessions by default) stores (obs, joint
action, scaled reward, normalised costs, next obs, terminated); with the same-step autoreset the next observation
of a session that ended is ``infos["final_obs"]``. ``gradient_steps`` updates (critics, actor, temperature) follow
each vector step once ``learning_starts`` steps are stored. The observations (MEG: SNR in dB of -40..60, energy
fractions, counts) are normalised by a running mean and variance of the observations collected during the random
warm-up, frozen from ``learning_starts`` on (so the critics' inputs do not shift under them) and kept in the actor
as buffers, so the saved model carries them.

Learning curves and the violations incurred while training go to ``runs/{run_name}/curves.jsonl`` (and
tensorboard); at the end the deterministic policy is evaluated on the held-out test prompts ->
runs/{run_name}/eval.json, or, on meg_gym/TabularCMDP-v0, the stochastic policy exactly against the LP optimum
-> runs/{run_name}/exact_check.json. ``--resume`` continues from checkpoint.pt (networks, optimisers, temperature,
multipliers; the replay memory starts empty again and refills before the updates restart).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import constrained, evaluation
from meg_gym.config import SplitControlConfig

ALGORITHM = "sac-lagrangian"


@dataclass
class Args:
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    cuda: bool = False
    """use CUDA when available (the environment itself runs on the CPU)"""
    track: bool = False
    """log to Weights & Biases (offline unless WANDB_API_KEY is set)"""
    wandb_project_name: str = "meg-gym"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    save_model: bool = False
    """save the actor to runs/{run_name}/ (model.safetensors, and checkpoint.pt to resume)"""
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
    buffer_size: int = 200_000
    """replay memory size (transitions)"""
    learning_starts: int = 10_000
    """environment steps of uniform random joint actions before learning starts (the observation normaliser is
    frozen from then on)"""
    gradient_steps: int = 4
    """gradient updates (critics, actor, temperature) per vector step"""
    batch_size: int = 256
    """minibatch size"""
    hidden_size: int = 128
    """width of the two hidden layers of the actor and of every critic"""
    q_lr: float = 3e-4
    """the Adam learning rate of the critics"""
    policy_lr: float = 3e-4
    """the Adam learning rate of the actor and of the temperature"""
    gamma: float = 1.0
    """discount factor (sessions are finite with the requests left in the observation; constraints are on
    undiscounted sums)"""
    tau: float = 0.005
    """target smoothing coefficient (Polyak)"""
    alpha: float = 0.1
    """entropy temperature (the starting value when --autotune)"""
    autotune: bool = True
    """tune the temperature towards the target entropy"""
    target_entropy_scale: float = 0.1
    """target entropy = this x log(number of joint actions)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    multiplier_lr: float = 0.5
    """dual ascent step of the Lagrange multipliers per batch of finished sessions (0: fixed penalty)"""
    cost_margin: float = 0.1
    """the multipliers aim at (1 - margin) x each limit: the deterministic policy evaluated at the end and the test
    prompts differ from the stochastic training policy"""
    initial_multipliers: tuple[float, ...] = (0.0,)
    """the multipliers' initial values, one per cost (MEG-SplitControl-v0: ue_energy, deadline_miss), or one for all"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split sessions in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; the sweep's tuning sets both)"""


class ReplayMemory:
    """Transitions of a vector env in numpy arrays, added a vector step at a time."""

    def __init__(self, size: int, obs_dim: int, num_costs: int):
        self.obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.actions = np.zeros(size, dtype=np.int64)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.costs = np.zeros((size, num_costs), dtype=np.float32)
        self.terminated = np.zeros(size, dtype=np.float32)
        self.size, self.pos, self.count = size, 0, 0

    def add(self, obs, next_obs, actions, rewards, costs, terminated) -> None:
        idx = (self.pos + np.arange(len(obs))) % self.size
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.rewards[idx], self.costs[idx], self.terminated[idx] = rewards, costs, terminated
        self.pos = int((self.pos + len(obs)) % self.size)
        self.count = min(self.count + len(obs), self.size)

    def sample(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        idx = np.random.randint(0, self.count, batch_size)
        arrays = (self.obs[idx], self.actions[idx], self.rewards[idx], self.costs[idx], self.next_obs[idx])
        return tuple(torch.as_tensor(a, device=device) for a in (*arrays, self.terminated[idx]))


class Normaliser(nn.Module):
    """Running mean and variance of the observations (Chan et al.'s parallel update), frozen once learning starts."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        self.register_buffer("count", torch.tensor(1e-4))

    def update(self, obs: torch.Tensor) -> None:
        batch_mean, batch_var, n = obs.mean(0), obs.var(0, unbiased=False), obs.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.fill_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean) / torch.sqrt(self.var + 1e-6)).clamp(-10, 10)


def mlp(obs_dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


class QNetwork(nn.Module):
    """``heads`` action-value vectors ``(batch, heads, n_actions)`` of a normalised observation."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, heads: int = 1):
        super().__init__()
        self.heads, self.n_actions = heads, n_actions
        self.net = mlp(obs_dim, hidden, heads * n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, self.heads, self.n_actions)


class Actor(nn.Module):
    """One categorical over the joint actions; holds the observation normaliser."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int):
        super().__init__()
        self.norm = Normaliser(obs_dim)
        self.net = mlp(obs_dim, hidden, n_actions)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, log-probabilities) over the joint actions of a NORMALISED observation."""
        log_probs = F.log_softmax(self.net(x), dim=1)
        return log_probs.exp(), log_probs

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The joint probabilities of a raw observation."""
        return self.distribution(self.norm(obs))[0]


def load_policy(run_dir: str | Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """The deterministic policy of a run saved with --save-model: ``policy(obs, env) -> actions (num_envs, 3)``
    (``(num_envs,)`` on a Discrete action space): the mode of the joint categorical.

    Reads only the run's model.json and model.safetensors (no stored code runs).
    """
    meta, state = evaluation.load_saved_run(run_dir, "model.safetensors")
    nvec = [int(n) for n in meta["nvec"]]
    hidden = int(meta.get("args", {}).get("hidden_size", Args.hidden_size))
    actor = Actor(int(meta["obs_dim"]), int(np.prod(nvec)), hidden)
    try:
        actor.load_state_dict(state)
    except RuntimeError as err:
        raise SystemExit(f"{run_dir}: the saved actor does not fit this version's network ({err})") from err
    actor.eval()
    discrete = bool(meta.get("discrete", False))

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        with torch.no_grad():
            joint = actor(torch.as_tensor(np.asarray(obs, dtype=np.float32))).argmax(1).numpy()
        return joint if discrete else np.stack(np.unravel_index(joint, nvec), axis=1)

    return policy


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
    if len(args.initial_multipliers) not in (1, num_costs):
        raise SystemExit(f"--initial-multipliers needs 1 or {num_costs} values, one per cost {cost_names}")
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
    nvec = [int(envs.single_action_space.n)] if discrete else [int(n) for n in envs.single_action_space.nvec]
    n_actions = int(np.prod(nvec))

    actor = Actor(obs_dim, n_actions, args.hidden_size).to(device)
    qf1, qf2 = (QNetwork(obs_dim, n_actions, args.hidden_size).to(device) for _ in range(2))
    qc = QNetwork(obs_dim, n_actions, args.hidden_size, heads=num_costs).to(device)
    qf1_target, qf2_target = (QNetwork(obs_dim, n_actions, args.hidden_size).to(device) for _ in range(2))
    qc_target = QNetwork(obs_dim, n_actions, args.hidden_size, heads=num_costs).to(device)
    for net, target in ((qf1, qf1_target), (qf2, qf2_target), (qc, qc_target)):
        target.load_state_dict(net.state_dict())
    q_optimizer = torch.optim.Adam([*qf1.parameters(), *qf2.parameters(), *qc.parameters()], lr=args.q_lr)
    actor_optimizer = torch.optim.Adam(actor.net.parameters(), lr=args.policy_lr)
    target_entropy = args.target_entropy_scale * float(np.log(n_actions))
    log_alpha = torch.tensor([float(np.log(args.alpha))], requires_grad=True, device=device)
    a_optimizer = torch.optim.Adam([log_alpha], lr=args.policy_lr)
    multipliers = torch.tensor(args.initial_multipliers, dtype=torch.float32).expand(num_costs).clone()
    modules = {"actor": actor, "qf1": qf1, "qf2": qf2, "qc": qc,
               "qf1_target": qf1_target, "qf2_target": qf2_target, "qc_target": qc_target}  # fmt: skip
    optimizers = {"q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, "a_optimizer": a_optimizer}
    rb = ReplayMemory(args.buffer_size, obs_dim, num_costs)

    global_step, updates, dual_steps = 0, 0, 0
    checkpoint = run_dir / "checkpoint.pt"
    resumed = args.resume and checkpoint.exists()
    if resumed:
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        for name, module in modules.items():
            module.load_state_dict(state[name])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state[name])
        with torch.no_grad():
            log_alpha.copy_(state["log_alpha"])
        multipliers = state["multipliers"].cpu()
        global_step, updates, dual_steps = (int(state[k]) for k in ("global_step", "updates", "dual_steps"))
        print(f"resumed {run_name} at step {global_step} (the replay memory starts empty again)")
    curves = constrained.TrainingCurves(run_dir, writer, cost_names, resume=resumed)
    alpha = log_alpha.exp().item()
    start_time, start_step, last_log = time.time(), global_step, global_step
    progress = tqdm(total=args.total_timesteps, initial=global_step, unit="step", mininterval=2.0)
    obs, _ = envs.reset(seed=args.seed + global_step)
    tracker = constrained.EpisodeTracker(args.num_envs, num_costs)
    finished_returns, finished_costs, finished = [], [], 0

    def save_checkpoint() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {name: m.state_dict() for name, m in modules.items()}
        state.update({name: o.state_dict() for name, o in optimizers.items()})
        state.update(log_alpha=log_alpha.detach().clone(), multipliers=multipliers.clone())
        torch.save({**state, "global_step": global_step, "updates": updates, "dual_steps": dual_steps}, checkpoint)

    while global_step < args.total_timesteps:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        if global_step < args.learning_starts:
            actor.norm.update(obs_t)
            joint = np.random.randint(0, n_actions, args.num_envs)
        else:
            with torch.no_grad():
                joint = torch.multinomial(actor(obs_t), 1).view(-1).cpu().numpy()
        env_action = joint if discrete else np.stack(np.unravel_index(joint, nvec), axis=1)
        next_obs, rewards, terminations, truncations, infos = envs.step(env_action)
        global_step += args.num_envs
        costs = constrained.step_costs(infos, cost_names, args.num_envs) / limits
        ended = np.logical_or(terminations, truncations)
        real_next_obs = np.array(next_obs, dtype=np.float32, copy=True)
        if "final_obs" in infos:
            for i in np.flatnonzero(infos.get("_final_obs", ended)):
                real_next_obs[i] = infos["final_obs"][i]
        rb.add(obs, real_next_obs, joint, rewards * args.reward_scale, costs, terminations)
        obs = next_obs
        episode_returns, episode_costs = tracker.step(np.asarray(rewards, dtype=np.float64), costs, ended)
        finished_returns.append(episode_returns)
        finished_costs.append(episode_costs)
        finished += len(episode_returns)

        # the multipliers follow each constraint, from the sessions finished since the last dual step
        if finished >= args.num_envs:
            row = curves.add(global_step, finished_returns, finished_costs)
            finished_returns, finished_costs, finished = [], [], 0
            if global_step >= args.learning_starts:
                error = torch.tensor(row["cost_over_limit"], dtype=torch.float32) - (1.0 - args.cost_margin)
                multipliers = torch.clamp(multipliers + args.multiplier_lr * error, min=0.0)
                dual_steps += 1
                if args.save_model and dual_steps % 20 == 0:
                    save_checkpoint()
            for c, name in enumerate(cost_names):
                writer.add_scalar(f"costs/multiplier_{name}", float(multipliers[c]), global_step)

        if global_step >= args.learning_starts and rb.count >= args.batch_size:
            weights = multipliers.to(device)
            for _ in range(args.gradient_steps):
                updates += 1
                b_obs, b_actions, b_rewards, b_costs, b_next_obs, b_term = rb.sample(args.batch_size, device)
                with torch.no_grad():
                    x, next_x = actor.norm(b_obs), actor.norm(b_next_obs)
                    next_probs, next_log_probs = actor.distribution(next_x)
                    next_q = torch.min(qf1_target(next_x)[:, 0], qf2_target(next_x)[:, 0])
                    next_v = (next_probs * (next_q - alpha * next_log_probs)).sum(1)
                    next_vc = (next_probs[:, None, :] * qc_target(next_x)).sum(2)  # (batch, costs)
                    keep = args.gamma * (1.0 - b_term)
                    target_r = b_rewards + keep * next_v
                    target_c = b_costs + keep[:, None] * next_vc
                taken = b_actions.view(-1, 1, 1)
                q1 = qf1(x).gather(2, taken).view(-1)
                q2 = qf2(x).gather(2, taken).view(-1)
                qcost = qc(x).gather(2, taken.expand(-1, num_costs, 1)).squeeze(2)
                qf_loss = F.mse_loss(q1, target_r) + F.mse_loss(q2, target_r)
                qc_loss = F.mse_loss(qcost, target_c) * num_costs
                q_optimizer.zero_grad()
                (qf_loss + qc_loss).backward()
                q_optimizer.step()

                probs, log_probs = actor.distribution(x)
                with torch.no_grad():
                    q_r = torch.min(qf1(x)[:, 0], qf2(x)[:, 0])
                    q_c = qc(x)  # (batch, costs, actions)
                    lagrangian = (q_r - (weights[None, :, None] * q_c).sum(1)) / (1.0 + weights.sum())
                actor_loss = (probs * (alpha * log_probs - lagrangian)).sum(1).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
                actor_optimizer.step()
                entropy = -(probs.detach() * log_probs.detach()).sum(1)
                if args.autotune:
                    alpha_loss = (log_alpha.exp() * (entropy - target_entropy)).mean()
                    a_optimizer.zero_grad()
                    alpha_loss.backward()
                    a_optimizer.step()
                    alpha = log_alpha.exp().item()

                for net, target in ((qf1, qf1_target), (qf2, qf2_target), (qc, qc_target)):
                    for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                        tp.data.mul_(1.0 - args.tau).add_(args.tau * p.data)

            if global_step - last_log >= 10 * args.num_envs:
                last_log = global_step
                sps = int((global_step - start_step) / (time.time() - start_time))
                writer.add_scalar("losses/qf_loss", qf_loss.item() / 2.0, global_step)
                writer.add_scalar("losses/qc_loss", qc_loss.item() / num_costs, global_step)
                writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
                writer.add_scalar("losses/alpha", alpha, global_step)
                writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                progress.set_postfix(
                    SPS=sps, alpha=round(alpha, 4), lam=[round(float(m), 2) for m in multipliers], refresh=False
                )
        progress.update(global_step - progress.n)
    progress.close()
    envs.close()
    wall_time = time.time() - start_time

    if args.save_model:
        from safetensors.torch import save_file

        save_checkpoint()
        save_file({k: v.contiguous() for k, v in actor.state_dict().items()}, str(run_dir / "model.safetensors"))
        (run_dir / "model.json").write_text(
            json.dumps(
                {
                    "algorithm": ALGORITHM,
                    "learner": Path(__file__).stem,
                    "obs_dim": obs_dim,
                    "nvec": nvec,
                    "discrete": discrete,
                    "cost_names": cost_names,
                    "multipliers": multipliers.tolist(),
                    "alpha": alpha,
                    "train_wall_time_s": wall_time,
                    "args": asdict(args),
                },
                default=str,
            )  # fmt: skip
        )

    actor.eval()

    def policy(observations, env):
        with torch.no_grad():
            joint = actor(torch.as_tensor(np.asarray(observations, dtype=np.float32), device=device)).argmax(1)
        joint = joint.cpu().numpy()
        return joint if discrete else np.stack(np.unravel_index(joint, nvec), axis=1)

    def probabilities(observations: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor(torch.as_tensor(np.asarray(observations, dtype=np.float32), device=device)).cpu().numpy()

    result = constrained.final_check(args.env_id, run_dir, policy, probabilities, ALGORITHM, run_name, args, args.env)
    writer.close()
    if tracking is not None:
        tracking.finish()
