"""Leaderboards: suites, a resumable runner, tables and plots (``etpo-gym bench``)."""

from etpo_gym.agent import load_agent

from .board import normalised, render, sem
from .runner import run_benchmark
from .suites import SUITES, get_suite

__all__ = ["SUITES", "get_suite", "load_agent", "normalised", "render", "run_benchmark", "sem"]
