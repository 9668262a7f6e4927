"""Train the shipped starter policy with TRL's GRPOTrainer on etpo-gym (needs the ``trl`` extra).

    python examples/trl_grpo.py                      # one-step rewards (score_batch), 4 steps
    python examples/trl_grpo.py --mode rollout       # multi-step episodes with env feedback
    python examples/trl_grpo.py --tasks skill_dates,wine --steps 20 --out runs/grpo

``--mode reward``: every completion is one ``build_model`` body, scored by
``etpo_gym.integrations.trl.EnvReward`` on a pool of warm sandboxes. ``--mode rollout``: up to
``--turns`` attempts per episode; after a failure the env's error is appended to the transcript
(``env_mask`` 0 on those tokens) and the model tries again; the reward is the episode's return.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("reward", "rollout"), default="reward")
    parser.add_argument("--tasks", default="skill_dates,skill_interactions")
    parser.add_argument("--seeds", type=int, default=4, help="episode seeds per task")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps")
    parser.add_argument("--generations", type=int, default=2, help="completions per prompt")
    parser.add_argument("--max-tokens", type=int, default=160, help="new tokens per attempt")
    parser.add_argument("--turns", type=int, default=2, help="attempts per episode (rollout)")
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--out", default="runs/trl_grpo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    import etpo_gym
    from etpo_agents.rollout import Rollout
    from etpo_agents.starter import starter_path
    from etpo_gym.integrations.trl import EnvReward
    from etpo_gym.prompts import TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(starter_path())
    model = AutoModelForCausalLM.from_pretrained(starter_path(), dtype=torch.float32)
    # prompts exactly as reset(seed) shows them, made without starting a kernel
    rows = etpo_gym.prompt_dataset(args.tasks.split(","), range(args.seeds))
    config = GRPOConfig(
        output_dir=args.out,
        seed=args.seed,
        max_steps=args.steps,
        per_device_train_batch_size=args.generations,
        num_generations=args.generations,
        # a rollout's completion holds every turn and the feedback between them
        max_completion_length=(
            args.max_tokens
            if args.mode == "reward"
            else args.max_tokens * args.turns + 96 * (args.turns - 1)
        ),
        learning_rate=1e-4,
        temperature=0.8,
        top_k=50,
        gradient_checkpointing=False,  # generation in train mode with checkpointing is garbage
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    if args.mode == "reward":
        reward = EnvReward(workers=2, sandbox=args.sandbox, timeout=30.0)
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=reward,
            args=config,
            train_dataset=Dataset.from_list(rows),
        )
    else:
        reward = Rollout(
            rows,
            max_turns=args.turns,
            max_turn_tokens=args.max_tokens,
            feedback_suffix=TEMPLATE,  # the starter continues the template it was trained on
            sandbox=args.sandbox,
            timeout=30.0,
        )
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=reward.reward,
            rollout_func=reward,
            args=config,
            train_dataset=Dataset.from_list(rows),
        )
    try:
        trainer.train()
    finally:
        reward.close()
    out = Path(args.out)
    trainer.save_model(str(out / "policy"))
    for record in trainer.state.log_history:
        if "reward" in record:
            print(f"step {record.get('step')}: mean reward {float(record['reward']):.3f}")
    episodes = reward.episodes if isinstance(reward, Rollout) else []
    return {"policy": out / "policy", "log": trainer.state.log_history, "episodes": episodes}


if __name__ == "__main__":
    main()
