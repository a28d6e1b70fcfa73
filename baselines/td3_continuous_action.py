"""TD3 for MEG power control, in one file (CleanRL's style, our own code).

    python baselines/td3_continuous_action.py --total-timesteps 100000

DDPG plus the three fixes of Fujimoto et al. (2018): twin critics with the minimum as target, target policy
smoothing noise, and delayed actor updates. Deterministic actor with tanh squashed to the action range [0, 1]. Observations are normalised by fixed
scales derived from the observation space. The native vector env runs with same-step autoreset, so each
transition stored is (obs, action, reward, final or next obs, terminal). The reward arrives at the last block,
so the return is undiscounted (gamma = 1). At the end the actor is evaluated on the held-out test prompts and
written to runs/{run_name}/eval.json.
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
import torch.nn.functional as F
import tyro
from gymnasium.vector import AutoresetMode
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym import evaluation
from meg_gym.config import PowerControlConfig, config_from_kwargs
from meg_gym.envs.power_control import FAIR_SHARE, make_spaces

ALGORITHM = "td3"


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
    capture_video: bool = False
    """save GIFs of a few test episodes of the trained policy to videos/{run_name}/"""
    save_model: bool = False
    """save the agent to runs/{run_name}/ (actor.safetensors, and checkpoint.pt to resume)"""
    resume: bool = False
    """resume from runs/{run_name}/checkpoint.pt when --run-name names an earlier run"""
    run_name: str | None = None
    """run name; default {env_id}__{exp_name}__{seed}__{time}"""

    env_id: str = "MEG-PowerControl-v0"
    """the environment id"""
    env: PowerControlConfig = field(default_factory=PowerControlConfig)
    """environment settings, passed to gym.make_vec (training uses --train-split)"""
    total_timesteps: int = 100_000
    """total environment steps"""
    num_envs: int = 8
    """parallel environments (one native vector env)"""
    learning_rate: float = 3e-4
    """the Adam learning rate of actor and critic"""
    buffer_size: int = 200_000
    """replay memory size"""
    gamma: float = 1.0
    """discount factor (episodes are short and the reward is terminal)"""
    tau: float = 0.005
    """target smoothing coefficient"""
    batch_size: int = 256
    """minibatch size"""
    exploration_noise: float = 0.1
    """standard deviation of the exploration noise, in units of the action range"""
    learning_starts: int = 5_000
    """environment steps of uniform random actions before learning starts"""
    updates_per_step: float = 0.25
    """gradient steps per environment step"""
    policy_frequency: int = 2
    """critic updates per actor (and target) update"""
    policy_noise: float = 0.2
    """target policy smoothing noise, in units of the action range"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise"""
    relative_action: bool = True
    """the actor scales the fair share of the energy left (observation 3): power = fair_share * exp(log_range * (2a - 1)) for actor output a in [0, 1], so a = 0.5 is static power; False: the actor outputs the power itself"""
    log_range: float = 3.0
    """with --relative-action, the largest factor (as a natural log) by which a block's power departs from the fair share"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (logged rewards are not)"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split episodes in the final evaluation"""
    eval_seed: int = evaluation.EVAL_SEED
    """first seed of the final evaluation"""
    train_split: str = "train"
    """prompts to train on: "train", or "fit" (train minus the validation prompts) when tuning on the validation prompts"""
    validation_episodes: int = 0
    """episodes on the held-out validation prompts after training, written to validation.json (needs --train-split
    fit; 0: none). Tuning selects on these; the test split stays for the final report"""


# Copied from baselines/ddpg_continuous_action.py
def to_power(action: np.ndarray, obs: np.ndarray, args: Args) -> np.ndarray:
    """The actor's output in [0, 1] -> the power fraction sent to the environment."""
    if not args.relative_action:
        return action
    return np.clip(obs[:, FAIR_SHARE : FAIR_SHARE + 1] * np.exp(args.log_range * (2.0 * action - 1.0)), 0.0, 1.0)


# Copied from baselines/ddpg_continuous_action.py
class ReplayBuffer:
    def __init__(self, size: int, obs_dim: int):
        self.obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((size, obs_dim), dtype=np.float32)
        self.actions = np.zeros((size, 1), dtype=np.float32)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.dones = np.zeros(size, dtype=np.float32)
        self.size, self.pos, self.full = size, 0, False

    def add(self, obs, next_obs, actions, rewards, dones) -> None:
        for i in range(len(obs)):
            self.obs[self.pos], self.next_obs[self.pos], self.actions[self.pos] = obs[i], next_obs[i], actions[i]
            self.rewards[self.pos], self.dones[self.pos] = rewards[i], dones[i]
            self.pos = (self.pos + 1) % self.size
            self.full = self.full or self.pos == 0

    def sample(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        idx = np.random.randint(0, self.size if self.full else self.pos, batch_size)
        arrays = (self.obs[idx], self.actions[idx], self.next_obs[idx], self.rewards[idx], self.dones[idx])
        return tuple(torch.as_tensor(a, device=device) for a in arrays)


# Copied from baselines/ddpg_continuous_action.py
class ObsScaler(nn.Module):
    """Maps the bounded observation space to about [-1, 1]."""

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return 2.0 * (obs - self.low) / (self.high - self.low) - 1.0


# Copied from baselines/ddpg_continuous_action.py
class QNetwork(nn.Module):
    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.scale = ObsScaler(space)
        self.net = nn.Sequential(
            nn.Linear(space.shape[0] + 1, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.scale(obs), 2.0 * action - 1.0], 1))


# Copied from baselines/ddpg_continuous_action.py
class Actor(nn.Module):
    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.scale = ObsScaler(space)
        self.net = nn.Sequential(
            nn.Linear(space.shape[0], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1), nn.Tanh()
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.net(self.scale(obs)) + 0.5  # [-1, 1] -> the action range [0, 1]


# Copied from baselines/ddpg_continuous_action.py
def load_policy(run_dir: str | Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """The deterministic policy of a run saved with --save-model: ``policy(obs, env) -> powers``.

    Reads only the run's model.json and actor.safetensors (no stored code runs).
    """
    meta, state = evaluation.load_saved_run(run_dir, "actor.safetensors")
    settings = types.SimpleNamespace(**{**asdict(Args()), **meta["args"]})
    config = config_from_kwargs(PowerControlConfig, {k: v for k, v in settings.env.items() if k != "split"})
    actor = Actor(make_spaces(config)[0])
    try:
        actor.load_state_dict(state)
    except RuntimeError as err:
        raise SystemExit(f"{run_dir}: the saved actor does not fit this version's network ({err})") from err
    actor.eval()

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        with torch.no_grad():
            return to_power(actor(torch.as_tensor(obs, dtype=torch.float32)).numpy(), obs, settings)

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

    env_kwargs = evaluation.env_kwargs(args.env)
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **{**env_kwargs, "split": args.train_split},
    )
    space = envs.single_observation_space
    actor, qf1, qf2 = Actor(space).to(device), QNetwork(space).to(device), QNetwork(space).to(device)
    target_actor, qf1_target, qf2_target = (
        Actor(space).to(device),
        QNetwork(space).to(device),
        QNetwork(space).to(device),
    )
    target_actor.load_state_dict(actor.state_dict())
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.learning_rate)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
    rb = ReplayBuffer(args.buffer_size, space.shape[0])
    modules = {
        "actor": actor,
        "qf1": qf1,
        "qf2": qf2,
        "target_actor": target_actor,
        "qf1_target": qf1_target,
        "qf2_target": qf2_target,
    }  # what a checkpoint holds

    global_step, updates = 0, 0
    checkpoint = run_dir / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        try:
            state = torch.load(checkpoint, weights_only=True, map_location=device)
        except Exception as err:  # torch raises several types for truncated or foreign files
            raise SystemExit(f"{checkpoint} cannot be read ({err}); delete it to start over, or drop --resume") from err
        for name, module in modules.items():
            module.load_state_dict(state[name])
        q_optimizer.load_state_dict(state["q_optimizer"])
        actor_optimizer.load_state_dict(state["actor_optimizer"])
        global_step, updates = int(state["global_step"]), int(state["updates"])
        print(f"resumed {run_name} at step {global_step} (the replay memory starts empty again)")
    start_time, start_step, owed = time.time(), global_step, 0.0
    last_log = global_step
    progress = tqdm(total=args.total_timesteps, initial=global_step, unit="step", mininterval=2.0)
    obs, _ = envs.reset(seed=args.seed + global_step)
    while global_step < args.total_timesteps:
        if global_step < args.learning_starts:
            actions = np.random.uniform(0.0, 1.0, (args.num_envs, 1)).astype(np.float32)
        else:
            with torch.no_grad():
                actions = actor(torch.as_tensor(obs, device=device)).cpu().numpy()
            actions = np.clip(actions + np.random.normal(0.0, args.exploration_noise, actions.shape), 0.0, 1.0)
        next_obs, rewards, terminations, truncations, infos = envs.step(to_power(actions, obs, args))
        global_step += args.num_envs
        progress.update(args.num_envs)
        real_next_obs = next_obs.copy()
        if "final_info" in infos:
            mask = infos["_final_info"]
            for i in np.flatnonzero(mask):
                real_next_obs[i] = infos["final_obs"][i]
            final = infos["final_info"]
            writer.add_scalar("charts/episodic_return", float(np.mean(rewards[mask])), global_step)
            writer.add_scalar("charts/image_quality_psnr", float(np.mean(final["psnr"][mask])), global_step)
            writer.add_scalar("charts/ssim", float(np.mean(final["ssim"][mask])), global_step)
            writer.add_scalar("charts/episodic_length", float(args.env.num_blocks), global_step)
        rb.add(obs, real_next_obs, actions, rewards * args.reward_scale, terminations)
        obs = next_obs

        if global_step >= args.learning_starts:
            owed += args.updates_per_step * args.num_envs
            while owed >= 1.0:
                owed -= 1.0
                updates += 1
                b_obs, b_actions, b_next_obs, b_rewards, b_dones = rb.sample(args.batch_size, device)
                with torch.no_grad():
                    noise = (torch.randn_like(b_actions) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
                    next_actions = (target_actor(b_next_obs) + noise).clamp(0.0, 1.0)
                    next_q = torch.min(qf1_target(b_next_obs, next_actions), qf2_target(b_next_obs, next_actions))
                    target_q = b_rewards + (1 - b_dones) * args.gamma * next_q.view(-1)
                qf1_loss = F.mse_loss(qf1(b_obs, b_actions).view(-1), target_q)
                qf2_loss = F.mse_loss(qf2(b_obs, b_actions).view(-1), target_q)
                q_optimizer.zero_grad()
                (qf1_loss + qf2_loss).backward()
                q_optimizer.step()
                if updates % args.policy_frequency == 0:
                    actor_loss = -qf1(b_obs, actor(b_obs)).mean()
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    actor_optimizer.step()
                    for net, target in ((actor, target_actor), (qf1, qf1_target), (qf2, qf2_target)):
                        for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                            tp.data.mul_(1 - args.tau).add_(args.tau * p.data)
            if global_step - last_log >= 2_000 and updates >= args.policy_frequency:
                last_log = global_step
                sps = int((global_step - start_step) / (time.time() - start_time))
                writer.add_scalar("losses/qf1_loss", qf1_loss.item(), global_step)
                writer.add_scalar("losses/qf2_loss", qf2_loss.item(), global_step)
                writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                progress.set_postfix(SPS=sps, refresh=False)
        if args.save_model and (global_step % 20_000 < args.num_envs or global_step >= args.total_timesteps):
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {name: m.state_dict() for name, m in modules.items()}
            state.update(q_optimizer=q_optimizer.state_dict(), actor_optimizer=actor_optimizer.state_dict())
            torch.save({**state, "global_step": global_step, "updates": updates}, checkpoint)
    progress.close()
    envs.close()

    if args.save_model:
        from safetensors.torch import save_file

        run_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in actor.state_dict().items()}, str(run_dir / "actor.safetensors"))
        (run_dir / "model.json").write_text(
            json.dumps({"algorithm": ALGORITHM, "learner": Path(__file__).stem, "args": asdict(args)}, default=str)
        )

    actor.eval()

    def policy(observations, env):
        with torch.no_grad():
            return to_power(actor(torch.as_tensor(observations, device=device)).cpu().numpy(), observations, args)

    eval_start = time.time()
    result = evaluation.evaluate_policy(policy, args.env_id, env_kwargs, args.eval_episodes, args.eval_seed)
    path = evaluation.write_eval(run_dir / "eval.json", result, "td3", run_name, asdict(args))
    if args.validation_episodes:
        validation = evaluation.evaluate_policy(
            policy, args.env_id, env_kwargs, args.validation_episodes, args.eval_seed, split="validation"
        )
        evaluation.write_validation(run_dir / "validation.json", validation, "td3", run_name)
    print(f"eval_seconds {time.time() - eval_start:.1f}")
    evaluation.log_eval(writer, result, global_step)
    print(f"test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}")
    if args.capture_video:
        evaluation.record_gifs(policy, args.env_id, env_kwargs, Path("videos") / run_name, seed=args.eval_seed)
    writer.close()
    if tracking is not None:
        tracking.finish()
