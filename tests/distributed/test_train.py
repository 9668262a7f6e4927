"""``etpo-gym train --ray``: the ETPO trainer collects its rollouts from Ray actors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.mark.slow
def test_trainer_steps_envs_that_are_ray_actors(ray_cluster, tmp_path):
    from etpo_agents.etpo.config import EtpoConfig
    from etpo_agents.etpo.toy import make_toy_model
    from etpo_agents.etpo.trainer import make_envs, train
    from etpo_gym.distributed import RayVectorEnv

    cfg = EtpoConfig(
        env_id="etpo_agents.etpo.toy:EtpoToy-v0", model=str(make_toy_model(tmp_path / "model")),
        num_envs=2, env_steps_per_update=2, max_new_tokens=2, steps=2, checkpoint_every=1000,
        out=str(tmp_path / "run"), ray=ray_cluster.address,
    )  # fmt: skip
    envs = make_envs(cfg)
    try:
        assert isinstance(envs, RayVectorEnv)
        assert len({w.node_id for w in envs.workers}) == 2  # one actor on each 1-CPU node
    finally:
        envs.close()
    run = train(cfg, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [1, 2]
    assert all(r["losses/critic"] == r["losses/critic"] for r in records)  # finite, not NaN
