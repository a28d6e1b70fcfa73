"""PPO with a continuous action for MEG power control, in one file (CleanRL's style, our own code).

    python baselines/ppo_continuous_action.py --total-timesteps 200000
    python baselines/ppo_continuous_action.py --env.budget-fraction 0.3 --env.fading rician --track

The policy is a Gaussian over an unbounded pre-activation u. By default (--relative-action) the power is
min(1, fair_share * exp(u)), where fair_share (observation 3) is the energy left spread evenly over the blocks
left, so the initial policy (u = 0) is static power and learning shapes the departures from it; with
--no-relative-action the power is sigmoid(u). Either way actions lie in [0, 1]. Observations are normalised with running
statistics kept inside the agent (saved with it). Episodes are 8 blocks with the image quality at the end,
so the return is undiscounted (gamma = 1). The native vector env runs with same-step autoreset: no step is
spent on resets. At the end the deterministic policy (u = the mean) is evaluated on the held-out test
prompts and written to runs/{run_name}/eval.json.
"""

from __future__ import annotations

import json
import random
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from gymnasium.vector import AutoresetMode
from torch.distributions.normal import Normal
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import evaluation
from meg_gym.config import PowerControlConfig
from meg_gym.envs.power_control import FAIR_SHARE, OBS_NAMES

ALGORITHM = "ppo"


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
    capture_video: bool = False
    """save GIFs of a few test episodes of the trained policy to videos/{run_name}/"""
    save_model: bool = False
    """save the agent to runs/{run_name}/ (model.safetensors, and checkpoint.pt to resume)"""
    resume: bool = False
    """resume from runs/{run_name}/checkpoint.pt when --run-name names an earlier run"""
    run_name: str | None = None
    """run name; default {env_id}__{exp_name}__{seed}__{time}"""

    env_id: str = "MEG-PowerControl-v0"
    """the environment id"""
    env: PowerControlConfig = field(default_factory=PowerControlConfig)
    """environment settings, passed to gym.make_vec (training uses --train-split)"""
    total_timesteps: int = 300_000
    """total environment steps"""
    learning_rate: float = 3e-4
    """the Adam learning rate"""
    num_envs: int = 64
    """parallel environments (one native vector env)"""
    num_steps: int = 16
    """steps per environment per rollout"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to 0"""
    gamma: float = 1.0
    """discount factor (episodes are short and the reward is terminal)"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 10
    """epochs per rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """PPO's clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss"""
    ent_coef: float = 0.0
    """entropy coefficient"""
    vf_coef: float = 0.5
    """value-loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    init_log_std: float = -0.5
    """initial log standard deviation of the Gaussian over u"""
    relative_action: bool = True
    """power = min(1, fair_share * exp(u)) (True) or sigmoid(u) (False)"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split episodes in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; 0: none). Tuning selects on these; the test split stays for the final report"""


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, init_log_std: float):
        super().__init__()
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.register_buffer("obs_count", torch.tensor(1e-4))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )  # fmt: skip
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=0.01),
        )  # fmt: skip
        self.actor_logstd = nn.Parameter(torch.full((1, 1), init_log_std))

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

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.normalise(obs))

    def get_action_and_value(self, obs: torch.Tensor, u: torch.Tensor | None = None):
        x = self.normalise(obs)
        mean = self.actor_mean(x)
        dist = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if u is None:
            u = dist.sample()
        return u, dist.log_prob(u).sum(1), dist.entropy().sum(1), self.critic(x)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean of u, for deterministic evaluation."""
        return self.actor_mean(self.normalise(obs))


def to_power(u: np.ndarray, obs: np.ndarray, relative: bool) -> np.ndarray:
    """The Gaussian sample u -> the power fraction sent to the environment, in [0, 1]."""
    if relative:
        return np.clip(obs[:, FAIR_SHARE : FAIR_SHARE + 1] * np.exp(np.clip(u, -20.0, 20.0)), 0.0, 1.0)
    return 1.0 / (1.0 + np.exp(-u))


def load_policy(run_dir: str | Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """The deterministic policy (the mean action) of a run saved with --save-model: ``policy(obs, env) -> powers``.

    Reads only the run's model.json and model.safetensors (no stored code runs). Observations may carry any
    leading axes (environments, agents); the powers keep them.
    """
    meta, state = evaluation.load_saved_run(run_dir, "model.safetensors")
    settings = types.SimpleNamespace(**{**asdict(Args()), **meta["args"]})
    agent = Agent(int(meta.get("obs_dim", len(OBS_NAMES))), settings.init_log_std)
    try:
        agent.load_state_dict(state)
    except RuntimeError as err:
        raise SystemExit(f"{run_dir}: the saved agent does not fit this version's network ({err})") from err
    agent.eval()

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        flat = np.asarray(obs, dtype=np.float32).reshape(-1, obs.shape[-1])
        with torch.no_grad():
            u = agent.act(torch.as_tensor(flat)).numpy()
        return to_power(u, flat, settings.relative_action).reshape(obs.shape[:-1])

    return policy


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

    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **{**evaluation.env_kwargs(args.env), "split": args.train_split},
    )
    obs_dim = envs.single_observation_space.shape[0]
    agent = Agent(obs_dim, args.init_log_std).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    actions = torch.zeros((args.num_steps, args.num_envs, 1), device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)

    start_iteration, global_step = 1, 0
    checkpoint = run_dir / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        agent.load_state_dict(state["agent"])
        optimizer.load_state_dict(state["optimizer"])
        start_iteration, global_step = int(state["iteration"]) + 1, int(state["global_step"])
        print(f"resumed {run_name} at iteration {start_iteration}, step {global_step}")
    start_time, start_step = time.time(), global_step
    progress = tqdm(
        total=args.num_iterations * args.num_steps * args.num_envs, initial=global_step, unit="step", mininterval=2.0
    )
    next_obs, _ = envs.reset(seed=args.seed + 1000 * (start_iteration - 1))
    next_obs = torch.tensor(next_obs, device=device)
    next_done = torch.zeros(args.num_envs, device=device)

    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            agent.update_obs_stats(next_obs)
            with torch.no_grad():
                u, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = u
            logprobs[step] = logprob
            power = to_power(u.cpu().numpy(), next_obs.cpu().numpy(), args.relative_action)
            next_obs_np, reward, terminations, truncations, infos = envs.step(power)
            rewards[step] = torch.tensor(reward * args.reward_scale, device=device, dtype=torch.float32)
            next_obs = torch.tensor(next_obs_np, device=device)
            next_done = torch.tensor(np.logical_or(terminations, truncations), device=device, dtype=torch.float32)
            if "final_info" in infos:
                final, mask = infos["final_info"], infos["_final_info"]
                writer.add_scalar("charts/episodic_return", float(np.mean(reward[mask])), global_step)
                writer.add_scalar("charts/image_quality_psnr", float(np.mean(final["psnr"][mask])), global_step)
                writer.add_scalar("charts/ssim", float(np.mean(final["ssim"][mask])), global_step)
                writer.add_scalar("charts/energy_used_fraction",
                                  float(np.mean(final["energy_used"][mask] / final["energy_budget"][mask])), global_step)  # fmt: skip
                writer.add_scalar("charts/episodic_length", float(envs.unwrapped.config.num_blocks), global_step)

        # generalised advantage estimation; an episode's last step does not bootstrap
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values

        b_obs = obs.reshape((-1, obs_dim))
        b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape((-1, 1))
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)

        b_inds = np.arange(args.batch_size)
        clipfracs = []
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_advantages * ratio, -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                    )
                    v_loss = (
                        0.5
                        * torch.max((newvalue - b_returns[mb_inds]) ** 2, (v_clipped - b_returns[mb_inds]) ** 2).mean()
                    )
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step - progress.n)
        progress.set_postfix(SPS=sps, refresh=False)
        if args.save_model and (iteration % 20 == 0 or iteration == args.num_iterations):
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {"agent": agent.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save({**state, "iteration": iteration, "global_step": global_step}, checkpoint)
    progress.close()
    envs.close()

    if args.save_model:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, str(run_dir / "model.safetensors"))
        (run_dir / "model.json").write_text(
            json.dumps(
                {"algorithm": ALGORITHM, "learner": Path(__file__).stem, "obs_dim": obs_dim, "args": asdict(args)},
                default=str,
            )
        )

    agent.eval()

    def policy(observations, env):
        with torch.no_grad():
            u = agent.act(torch.as_tensor(observations, device=device)).cpu().numpy()
            return to_power(u, observations, args.relative_action)

    eval_start = time.time()
    result = evaluation.evaluate_policy(
        policy, args.env_id, evaluation.env_kwargs(args.env), episodes=args.eval_episodes, seed=args.eval_seed
    )
    path = evaluation.write_eval(run_dir / "eval.json", result, "ppo", run_name, asdict(args))
    if args.validation_episodes:
        validation = evaluation.evaluate_policy(
            policy,
            args.env_id,
            evaluation.env_kwargs(args.env),
            args.validation_episodes,
            args.eval_seed,
            split="validation",
        )
        evaluation.write_validation(run_dir / "validation.json", validation, "ppo", run_name)
    print(f"eval_seconds {time.time() - eval_start:.1f}")
    for key in ("quality", "psnr", "ssim", "energy_used"):
        writer.add_scalar(f"eval/{key}", result[key]["mean"], global_step)
    print(f"test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}")
    if args.capture_video:
        evaluation.record_gifs(policy, args.env_id, evaluation.env_kwargs(args.env), Path("videos") / run_name)
    writer.close()
    if tracking is not None:
        tracking.finish()
