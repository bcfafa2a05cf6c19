"""RL algorithms in small, readable modules: networks, GAE, PPO update, DQN (replay buffer, target net)."""
