"""Stable-Baselines3 agents (PPO, SAC), their export to numpy policies, and the
optimising baselines (optuna schedules, PID gains), each on a stated simulation budget.

A trained agent is kept as its deterministic actor only: the weights of the MLP
(observation -> action; PPO: tanh hidden layers and a clipped linear head, SAC: ReLU
hidden layers and a tanh head) as numpy arrays, saved in a bundle with safetensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.training.inputs import torch_threads

__all__ = ["NumpyPolicy", "optuna_search", "train_agent"]

#: initial log standard deviation of PPO's Gaussian actions: a threshold moves by about
#: exp(0.05) while exploring; wider noise makes the steep rate curves punish exploration
#: and the learned menu drifts to needlessly high thresholds
LOG_STD = -3.0
_ACT = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "identity": lambda x: x}


@dataclass
class NumpyPolicy:
    """A deterministic MLP policy: hidden ``layers`` [(W, b)] with ``activation``, a head
    (W, b) and ``squash`` ("clip" or "tanh") onto [-1, 1]."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    head: tuple[np.ndarray, np.ndarray]
    activation: str = "tanh"
    squash: str = "clip"
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        act = _ACT[self.activation]
        for w, b in self.layers:
            x = act(x @ w.T + b)
        y = x @ self.head[0].T + self.head[1]
        return np.tanh(y) if self.squash == "tanh" else np.clip(y, -1.0, 1.0)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(self.layers):
            out[f"w{i}"], out[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        out["head_w"], out["head_b"] = (
            self.head[0].astype(np.float32),
            self.head[1].astype(np.float32),
        )
        return out

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        activation: str,
        squash: str,
        info: dict[str, Any] | None = None,
    ) -> NumpyPolicy:
        n = sum(1 for k in arrays if k.startswith("w"))
        layers = [
            (arrays[f"w{i}"].astype(np.float64), arrays[f"b{i}"].astype(np.float64))
            for i in range(n)
        ]
        head = (arrays["head_w"].astype(np.float64), arrays["head_b"].astype(np.float64))
        return cls(layers, head, activation, squash, info or {})


def _linears(module: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    torch = extras.torch()
    return [
        (m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy())
        for m in module.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def export_policy(agent: Any, kind: str) -> NumpyPolicy:
    """The deterministic actor of a trained SB3 agent, as numpy."""
    if kind == "ppo":
        p = agent.policy
        return NumpyPolicy(
            _linears(p.mlp_extractor.policy_net), _linears(p.action_net)[0], "tanh", "clip"
        )
    actor = agent.policy.actor
    return NumpyPolicy(_linears(actor.latent_pi), _linears(actor.mu)[0], "relu", "tanh")


def train_agent(
    kind: str,
    make_env: Callable[[int], Any],
    timesteps: int,
    seed: int,
    hidden: int = 64,
    gamma: float = 0.0,
    n_envs: int = 8,
) -> tuple[NumpyPolicy, list[Any]]:
    """Train PPO or SAC (Stable-Baselines3, CPU, one thread) for ``timesteps`` environment
    steps; returns the deterministic actor and the environments it was trained on.

    ``make_env(i)`` builds environment i; PPO steps ``n_envs`` of them at once (batched
    forward passes), SAC one.  ``gamma`` 0: in both environments an action changes only
    its own step's reward (the fill evolves whatever the thresholds are; a layout is one
    step), so the return is the immediate reward.
    """
    sb3 = extras.stable_baselines3()
    vec = extras.stable_baselines3("common.vec_env")
    with torch_threads(1):
        if kind == "ppo":
            envs = [make_env(i) for i in range(n_envs)]
            venv = vec.DummyVecEnv([lambda e=e: e for e in envs])
            # short rollouts: many small updates (the return is one step long).  PPO's
            # clipped ratio lets the mean action move by a fraction of the small
            # exploration width per update, so the number of updates, not the rollout
            # length, sets how far the menu can move from the reference
            n_steps = max([8] + [n for n in (16, 32) if timesteps >= 40 * n * n_envs])
            agent = sb3.PPO(
                "MlpPolicy",
                venv,
                seed=seed,
                device="cpu",
                verbose=0,
                n_steps=n_steps,
                batch_size=n_steps * n_envs // 2,
                n_epochs=5,
                learning_rate=1e-3,
                gamma=gamma,
                gae_lambda=0.0 if gamma == 0 else 0.95,
                ent_coef=0.0,
                policy_kwargs={"net_arch": [hidden, hidden], "log_std_init": LOG_STD},
            )
        else:
            envs = [make_env(0)]
            agent = sb3.SAC(
                "MlpPolicy",
                envs[0],
                seed=seed,
                device="cpu",
                verbose=0,
                learning_starts=min(100, timesteps // 4),
                batch_size=128,
                gamma=gamma,
                learning_rate=1e-3,
                train_freq=1,
                gradient_steps=1,
                # little entropy: exploration noise is costly near the rate budget
                ent_coef="auto_0.05",
                target_entropy=-3.0 * float(envs[0].action_space.shape[0]),
                policy_kwargs={"net_arch": [hidden, hidden]},
            )
        agent.learn(total_timesteps=int(timesteps))
    policy = export_policy(agent, kind)
    policy.info = {"agent": kind, "timesteps": int(timesteps), "seed": int(seed)}
    return policy, envs


def optuna_search(
    objective: Callable[[np.ndarray], float],
    dims: int,
    trials: int,
    seed: int,
    low: float = -1.0,
    high: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Maximise ``objective`` over [low, high]^dims with optuna's TPE sampler (Bayesian
    optimisation), ``trials`` evaluations; returns the best point and value."""
    optuna = extras.optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(20, trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def f(trial: Any) -> float:
        x = np.array([trial.suggest_float(f"x{i}", low, high) for i in range(dims)])
        return float(objective(x))

    study.optimize(f, n_trials=int(trials))
    best = study.best_params
    return np.array([best[f"x{i}"] for i in range(dims)]), float(study.best_value)
