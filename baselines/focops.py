r"""FOCOPS (First Order Constrained Optimization in Policy Space) for MEG-SplitControl-v0's constrained MDP, in one file.

    python baselines/focops.py                                               # FOCOPS, 600k steps
    python baselines/focops.py --env-id meg_gym/TabularCMDP-v0 --cost-margin 0 --num-envs 256 --num-steps 5 \
        --num-minibatches 4 --total-timesteps 300000 --learning-rate 1e-3 --ent-coef 0.1 --nu-lr 0.2 \
        --save-model --run-name focops_tabular                                   # the check against an LP optimum

Zhang, Vuong & Ross, "First Order Constrained Optimization in Policy Space", NeurIPS 2020. FOCOPS first solves the
constrained trust-region problem in the space of all policies, ``max_pi E[A_r]`` subject to ``J_c(pi_old) + E[A_c]
<= b_c`` and ``E_s[KL(pi || pi_old)(s)] <= delta``; its solution is ``pi*(a|s) ∝ pi_old(a|s) exp((A_r(s,a) -
sum_c nu_c A_c(s,a)) / lam)`` (temperature ``lam``, one multiplier ``nu_c >= 0`` per cost). It then projects
``pi*`` back onto the parametric policy by minimising ``E_s[KL(pi_theta || pi*)(s)]``, whose gradient is that of
the first-order loss this file minimises over each minibatch (the paper's Algorithm 1 with m constraints):

    L(theta) = mean_s [ KL(pi_theta || pi_old)(s) - (1 / lam) * r(s, a) * (A_r - sum_c nu_c A_c) ]
                      * 1[ KL(pi_theta || pi_old)(s) <= delta ],         r = pi_theta(a|s) / pi_old(a|s)

The indicator drops the states whose policy has already left the trust region, and the epochs stop early once
the mean KL over the rollout exceeds ``delta``. The policy is a product of categorical heads (split step, scheme,
energy level: the env's MultiDiscrete action; a Discrete action space is one head), so the per-state KL is exact:
the sum of the heads' KL divergences. ``pi_old`` is the policy when the rollout ends (its logits and log
probabilities are recomputed on the rollout's observations before the update, as the paper's code does).

Two (or more) constraints: each cost of ``info["costs"]`` is divided by its episode limit (a session meets a
limit when its normalised cost sums to at most 1), has its own critic head and generalised advantage estimate,
and its own multiplier. Before each policy update (the paper updates nu first), every multiplier takes a
projected gradient step on its constraint from the episodes the rollout finished,

    nu_c <- clip(nu_c - nu_lr * (b_c - J_c), 0, nu_max),     b_c = 1 - cost_margin,  J_c = mean episode cost_c / limit_c

and the policy follows ``A_r - sum_c nu_c A_c``. As in the paper's code, the reward advantage and every cost
advantage are each normalised over the rollout to zero mean and unit standard deviation, so ``lam``, ``nu_max``
and ``delta`` keep the paper's meaning (1.5, 2, 0.02): ``nu_c = 2`` weighs a cost's standardised advantage twice
the reward's. Only ``nu_lr`` changes units: the paper's 0.01 is per unit of raw episode cost, with limits of
about 20 to 150 in its tasks, i.e. 0.2 to 1.5 per unit of *normalised* cost; our rollouts finish 64 sessions
each (the paper's, about two episodes), so the mean cost is far less noisy and ``nu_lr = 0.5`` (a session 10%
over its limit moves nu by 0.05 per rollout) sits inside that range (the tabular check uses 0.2). The value heads learn from their own
optimiser, so the trust-region indicator never masks the critic.

Learning curves and the violations incurred while training go to ``runs/{run_name}/curves.jsonl`` (and
tensorboard). Sessions are 32 requests and the rollout is one session per environment (``--num-steps 32``,
same-step autoreset), so every rollout ends with complete sessions whose costs update the multipliers. At the end
the deterministic policy (the mode of each head) is evaluated on the held-out test prompts ->
runs/{run_name}/eval.json (on the tabular CMDP the stochastic policy is checked exactly -> exact_check.json).
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
import tyro
from torch.distributions.categorical import Categorical
from torch.distributions.kl import kl_divergence
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import constrained, evaluation
from meg_gym.config import SplitControlConfig

ALGORITHM = "focops"


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
    """the Adam learning rate of the policy and of the critic (the paper's 3e-4)"""
    num_envs: int = 64
    """parallel sessions (one native vector env)"""
    num_steps: int = 32
    """steps per environment per rollout (one session by default)"""
    anneal_lr: bool = True
    """linearly anneal the learning rates to 0"""
    gamma: float = 1.0
    """discount factor (sessions are finite; constraints are on undiscounted sums)"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation (reward and costs)"""
    num_minibatches: int = 8
    """minibatches per epoch (2048 steps -> 256 per minibatch)"""
    update_epochs: int = 10
    """most epochs per rollout (the paper's 10); fewer when the mean KL passes delta"""
    lam: float = 1.5
    """temperature of the optimal non-parametric update, pi* ∝ pi_old exp(A / lam) (the paper's 1.5)"""
    delta: float = 0.02
    """trust region: states whose KL(pi_theta || pi_old) exceeds it leave the loss, and the epochs stop once the
    mean KL does (the paper's 0.02)"""
    nu_lr: float = 0.5
    """step of each multiplier per unit of mean normalised episode cost above its target (the paper's 0.01 per unit
    of raw cost, times its limits of 20-150)"""
    nu_max: float = 2.0
    """upper bound of each multiplier (the paper's 2; the advantages are standardised, so it is unitless)"""
    initial_nus: tuple[float, ...] = (0.0,)
    """the multipliers' initial values, one per cost (MEG-SplitControl-v0: ue_energy, deadline_miss), or one for all"""
    ent_coef: float = 0.0
    """entropy bonus (the paper uses none: the KL term keeps the policy near pi_old). The tabular check needs 0.1:
    its optimum mixes actions, and without it the heads saturate, stop answering the multipliers, and the
    multipliers and costs cycle (0, 0.03, 0.05 and 0.07 cycled in trial runs, 0.1 settled)"""
    vf_coef: float = 0.5
    """value-loss coefficient (all heads)"""
    max_grad_norm: float = 0.5
    """gradient clipping norm (policy and critic separately)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    cost_margin: float = 0.1
    """the multipliers aim at (1 - margin) x each limit: the deterministic policy evaluated at the end and the test
    prompts differ from the stochastic training policy (as for ppo_lagrangian.py)"""
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


def head_kl(new_heads: list[Categorical], old_logits: torch.Tensor, nvec: list[int]) -> torch.Tensor:
    """(batch,): KL(pi_theta || pi_old) of the joint policy per state, the sum of its independent heads' KLs."""
    old_heads = [Categorical(logits=part) for part in torch.split(old_logits, nvec, dim=1)]
    return sum(kl_divergence(new, old) for new, old in zip(new_heads, old_heads, strict=True))


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
    if len(args.initial_nus) not in (1, num_costs):
        raise SystemExit(f"--initial-nus needs 1 or {num_costs} values, one per cost {cost_names}")
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
    nvec = [int(envs.single_action_space.n)] if discrete else [int(n) for n in envs.single_action_space.nvec]
    agent = Agent(obs_dim, nvec, num_costs).to(device)
    pi_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.learning_rate, eps=1e-5)
    vf_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.learning_rate, eps=1e-5)
    nus = torch.tensor(args.initial_nus, dtype=torch.float32).expand(num_costs).clone().clamp(0.0, args.nu_max)
    target = 1.0 - args.cost_margin  # b_c, in units of each limit

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, len(nvec)), dtype=torch.long, device=device)
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
        pi_optimizer.load_state_dict(state["pi_optimizer"])
        vf_optimizer.load_state_dict(state["vf_optimizer"])
        nus = state["nus"].cpu()
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
    kl, epochs_run, pi_loss, v_loss = torch.zeros(()), 0, torch.zeros(()), torch.zeros(())

    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            for optimizer in (pi_optimizer, vf_optimizer):
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
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

        # nu first (the paper's order): a projected gradient step per cost, from the episodes this rollout finished
        row = curves.add(global_step, finished_returns, finished_costs)
        if row is not None:
            episode_cost = torch.tensor(row["cost_over_limit"], dtype=torch.float32)
            nus = torch.clamp(nus - args.nu_lr * (target - episode_cost), 0.0, args.nu_max)
            for c, name in enumerate(cost_names):
                writer.add_scalar(f"costs/multiplier_{name}", float(nus[c]), global_step)

        b_obs = obs.reshape((-1, obs_dim))
        b_actions = actions.reshape((-1, len(nvec)))
        b_returns = returns.reshape(-1, 1 + num_costs)
        # the paper's code: every advantage (reward and each cost) standardised over the rollout
        b_advantages = advantages.reshape(-1, 1 + num_costs)
        b_advantages = (b_advantages - b_advantages.mean(0)) / (b_advantages.std(0) + 1e-8)
        b_penalised = b_advantages[:, 0] - b_advantages[:, 1:] @ nus.to(device)  # A_r - sum_c nu_c A_c
        with torch.no_grad():  # pi_old: the policy that ends the rollout, on the rollout's observations
            b_old_logits = agent.actor(agent.normalise(b_obs))
            old_heads = [Categorical(logits=part) for part in torch.split(b_old_logits, nvec, dim=1)]
            b_old_logprobs = sum(h.log_prob(b_actions[:, i]) for i, h in enumerate(old_heads))

        b_inds = np.arange(args.batch_size)
        for epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                heads = agent.heads(b_obs[mb_inds])
                newlogprob = sum(h.log_prob(b_actions[mb_inds, i]) for i, h in enumerate(heads))
                entropy = sum(h.entropy() for h in heads)
                ratio = (newlogprob - b_old_logprobs[mb_inds]).exp()
                state_kl = head_kl(heads, b_old_logits[mb_inds], nvec)
                inside = (state_kl.detach() <= args.delta).float()
                pi_loss = ((state_kl - ratio * b_penalised[mb_inds] / args.lam) * inside).mean()
                pi_loss = pi_loss - args.ent_coef * entropy.mean()
                pi_optimizer.zero_grad()
                pi_loss.backward()
                nn.utils.clip_grad_norm_(agent.actor.parameters(), args.max_grad_norm)
                pi_optimizer.step()

                v_loss = 0.5 * ((agent.get_values(b_obs[mb_inds]) - b_returns[mb_inds]) ** 2).mean()
                vf_optimizer.zero_grad()
                (v_loss * args.vf_coef).backward()
                nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
                vf_optimizer.step()
            epochs_run = epoch + 1
            with torch.no_grad():
                kl = head_kl(agent.heads(b_obs), b_old_logits, nvec).mean()
            if kl > args.delta:  # the trust region is spent: no more epochs on this rollout
                break

        writer.add_scalar("charts/learning_rate", pi_optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pi_loss.item(), global_step)
        writer.add_scalar("losses/kl", kl.item(), global_step)
        writer.add_scalar("losses/epochs", epochs_run, global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step - progress.n)
        progress.set_postfix(SPS=sps, nu=[round(float(m), 2) for m in nus], kl=round(kl.item(), 4), refresh=False)
        if args.save_model and (iteration % 20 == 0 or iteration == args.num_iterations):
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {"agent": agent.state_dict(), "pi_optimizer": pi_optimizer.state_dict(),
                     "vf_optimizer": vf_optimizer.state_dict(), "nus": nus}  # fmt: skip
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
                    "multipliers": nus.tolist(),
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
