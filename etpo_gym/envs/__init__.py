"""Gymnasium environments of etpo-gym."""

from etpo_gym.envs.datasci import DataSciEnv

__all__ = ["DataSciEnv"]
