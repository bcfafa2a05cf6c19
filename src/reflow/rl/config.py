"""Training configurations: per-env presets, config files (YAML or TOML) and command-line overrides.

A config is a ``TrainConfig``. ``resolve`` builds one in layers, each overriding the one before:

1. the defaults (PPO with the RL Zoo's CartPole-v1 hyper-parameters);
2. the preset for ``(algo, env)`` below, if any: the RL Zoo's tuned sets (CleanRL's for Hopper-v5);
3. a config file: top-level ``TrainConfig`` fields and a table named after the algorithm::

       algo = "dqn"              # TOML; the same keys in YAML
       num_envs = 4
       total_steps = 100000
       [dqn]
       lr = 0.001
       prioritized = true

4. the options given on the command line.

The target return defaults to the env's ``reward_threshold`` in gymnasium's registry (CartPole-v1 475,
Acrobot-v1 -100, InvertedPendulum-v5 950, ...), where it has one.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from reflow.errors import TrainConfigError
from reflow.rl.algos import AGENTS
from reflow.rl.train import TrainConfig

_ATARI_DQN = {
    "num_envs": 1,
    "dqn": {
        "lr": 1e-4,
        "batch_size": 32,
        "buffer_size": 1_000_000,
        "learning_starts": 100_000,
        "target_update": 1000,
        "train_freq": 4,
        "gradient_steps": 1,
        "eps_fraction": 0.1,
        "eps_end": 0.01,
    },
}
_ATARI_PPO = {
    "num_envs": 8,
    "ppo": {
        "num_steps": 128,
        "epochs": 4,
        "minibatch_size": 256,
        "lr": 2.5e-4,
        "clip": 0.1,
        "ent_coef": 0.01,
        "gamma": 0.99,
        "gae_lambda": 0.95,
    },
}

PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "CartPole-v1"): {"num_envs": 8},
    ("ppo", "Acrobot-v1"): {
        "num_envs": 16,
        "ppo": {
            "num_steps": 256,
            "gae_lambda": 0.94,
            "gamma": 0.99,
            "epochs": 4,
            "minibatch_size": 64,
            "lr": 3e-4,
            "lr_schedule": "constant",
            "clip_schedule": "constant",
            "normalize_obs": True,
            "normalize_reward": True,
        },
    },
    ("ppo", "InvertedPendulum-v5"): {
        "num_envs": 1,
        "ppo": {
            "num_steps": 32,
            "minibatch_size": 64,
            "gamma": 0.999,
            "lr": 0.000222425,
            "lr_schedule": "constant",
            "ent_coef": 1.37976e-07,
            "clip": 0.4,
            "clip_schedule": "constant",
            "epochs": 5,
            "gae_lambda": 0.9,
            "max_grad_norm": 0.3,
            "vf_coef": 0.19816,
            "normalize_obs": True,
            "normalize_reward": True,
        },
    },
    ("ppo", "Hopper-v5"): {
        "num_envs": 1,
        "ppo": {  # CleanRL's ppo_continuous_action.py defaults
            "num_steps": 2048,
            "minibatch_size": 64,
            "epochs": 10,
            "lr": 3e-4,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_schedule": "constant",
            "normalize_obs": True,
            "normalize_reward": True,
        },
    },
    ("dqn", "CartPole-v1"): {"num_envs": 1, "eval_every": 5000},
    ("dqn", "Acrobot-v1"): {
        "num_envs": 1,
        "eval_every": 5000,
        "dqn": {
            "lr": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "target_update": 250,
            "train_freq": 4,
            "gradient_steps": -1,
            "eps_fraction": 0.12,
            "eps_end": 0.1,
        },
    },
    ("sac", "Pendulum-v1"): {"num_envs": 1},
}


def preset(algo: str, env_id: str) -> dict[str, Any]:
    """The preset overrides for ``algo`` on ``env_id`` (Atari games share one), or none."""
    if env_id.startswith("ALE/"):
        return {"dqn": _ATARI_DQN, "ppo": _ATARI_PPO}.get(algo, {})
    if (algo, env_id) in PRESETS:
        return PRESETS[(algo, env_id)]
    return {"num_envs": 1, "sac": {"learning_starts": 10_000, "lr": 3e-4}} if algo == "sac" else {}


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's contents (``.toml``, or ``.yaml`` / ``.yml``) as a dict."""
    if not path.is_file():
        raise TrainConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise TrainConfigError(f"config file {path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise TrainConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {e}") from e
    except Exception as e:  # yaml.YAMLError and its kin
        if isinstance(e, TrainConfigError):
            raise
        raise TrainConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise TrainConfigError(
            f"config file {path} must hold a table (key = value), not {type(data).__name__}"
        )
    return data


def apply(cfg: TrainConfig, layer: dict[str, Any], where: str) -> TrainConfig:
    """``cfg`` with the values of ``layer`` (top-level fields and algorithm tables) put in."""
    top = {f.name for f in fields(TrainConfig)} - set(AGENTS)
    changes: dict[str, Any] = {}
    for key, value in layer.items():
        if key in AGENTS:
            if not isinstance(value, dict):
                raise TrainConfigError(f"{where}: {key!r} must be a table of {key} hyper-parameters")
            known = {f.name for f in fields(AGENTS[key][1])}
            unknown = sorted(set(value) - known)
            if unknown:
                raise TrainConfigError(
                    f"{where}: unknown {key} hyper-parameter(s) {unknown}; known: {', '.join(sorted(known))}"
                )
            current = changes.get(key, getattr(cfg, key))
            changes[key] = replace(
                current, **{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            )
        elif key in top:
            changes[key] = value
        else:
            raise TrainConfigError(
                f"{where}: unknown setting {key!r}; known: {', '.join(sorted(top | set(AGENTS)))}"
            )
    return replace(cfg, **changes)


def default_target(env_id: str) -> float | None:
    """The env's ``reward_threshold`` from gymnasium's registry, if it has one."""
    import gymnasium as gym

    try:
        threshold = gym.spec(env_id).reward_threshold
    except Exception:  # unknown or plugin ids: no default target
        return None
    return None if threshold is None else float(threshold)


def resolve(
    env_id: str, algo: str | None = None, file: Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """The config of a run: defaults, preset, file, overrides (see the module docstring)."""
    from_file = read_config_file(file) if file is not None else {}
    chosen = (overrides or {}).get("algo") or algo or from_file.get("algo") or "ppo"
    if chosen not in AGENTS:
        raise TrainConfigError(f"unknown algo {chosen!r}; choose one of {', '.join(AGENTS)}")
    cfg = TrainConfig(env_id=env_id, algo=chosen, target_return=default_target(env_id))
    cfg = apply(cfg, preset(chosen, env_id), f"preset for {chosen} on {env_id}")
    cfg = apply(cfg, {k: v for k, v in from_file.items() if k != "algo"}, f"config file {file}")
    return apply(
        cfg, {k: v for k, v in (overrides or {}).items() if v is not None and k != "algo"}, "command line"
    )
