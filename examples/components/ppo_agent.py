"""A PPO agent for CartPole as a component graph: `reflow graph examples/components/ppo_agent.py -o ppo.svg`
draws it (one node per API call of a component, edges where tensors flow)."""

import gymnasium as gym

from reflow.components import from_space
from reflow.rl.algos import PPOAgent, PPOConfig


def main() -> PPOAgent:
    env = gym.make("CartPole-v1")
    agent = PPOAgent(
        from_space(env.observation_space), from_space(env.action_space), PPOConfig(), num_envs=8, seed=0
    )
    agent.build()
    return agent


if __name__ == "__main__":
    agent = main()
    assert agent.built is not None
    print(f"built {agent.path!r} in {agent.built.seconds:.2f} s: {len(agent.graph())} nodes")
