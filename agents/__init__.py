"""Agents for etpo-gym, imported as ``etpo_agents`` (``agents`` is the openai-agents package).

Importing this package does not import torch: the baselines need only the standard library; the
ETPO agent (``etpo_agents.etpo``) and the starter policy need the ``[agent]`` extra.
"""
