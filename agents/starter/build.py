"""Build the starter policy from nothing: tokenizer + a small GPT-2 pretrained on the corpus.

    python -m etpo_agents.starter.build --out agents/starter/checkpoint --seed 0

Deterministic on CPU: the same seed, settings, thread count, corpus code and library versions
give bit-identical weights (the sha256 of ``model.safetensors`` is in ``build_info.json``).

The loss is on the body tokens only (the prompt is context) and each body ends with EOS, so the
model learns *when to stop* as well as what to write. Samples are streamed from
:func:`~etpo_agents.starter.corpus.iter_samples`: every training sequence is new, so there is no
epoch and no overfitting to a fixed set. Batches are grouped by length (long reflection prompts
together) to waste less compute on padding.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError

from .corpus import Sample, builtin_tasks, iter_samples

EOS = "<|endoftext|>"


@dataclass
class BuildConfig:
    """Settings of a starter build (all recorded in ``build_info.json``)."""

    seed: int = 0
    """seeds the corpus stream, the weight initialisation and the batch order"""
    steps: int = 1200
    """optimizer steps; the corpus size is ``steps * batch_size`` samples"""
    batch_size: int = 32
    """sequences per step"""
    lr: float = 3e-3
    """peak learning rate (AdamW), after a linear warmup, then cosine decay to 10%"""
    warmup_steps: int = 60
    """linear warmup steps"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    n_layer: int = 4
    """transformer blocks"""
    n_embd: int = 128
    """model width"""
    n_head: int = 4
    """attention heads"""
    n_positions: int = 512
    """context length (prompt + body)"""
    vocab_size: int = 2000
    """BPE vocabulary size, special tokens included"""
    max_token_length: int = 16
    """longest token, in characters"""
    tokenizer_samples: int = 4000
    """samples (prompt and body) the tokenizer is trained on"""
    bucket_batches: int = 16
    """batches whose samples are sorted by length together"""
    threads: int = 2
    """torch CPU threads; part of the determinism contract"""
    eval_samples: int = 64
    """bodies sampled at the end to measure the in-process valid-sample rate (0: skip)"""
    eval_temperature: float = 0.8
    """sampling temperature of that measurement"""
    log_every: int = 50
    """steps between progress lines (0: quiet)"""

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "n_layer",
            "n_embd",
            "n_head",
            "n_positions",
            "tokenizer_samples",
            "bucket_batches",
            "threads",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"BuildConfig.{name}={value!r} must be an integer >= 1")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"BuildConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        if not 300 <= self.vocab_size <= 65536:
            raise ConfigError(
                f"BuildConfig.vocab_size={self.vocab_size!r} must be in [300, 65536] "
                "(256 byte tokens + merges + specials)"
            )
        if not 2 <= self.max_token_length <= 64:
            raise ConfigError(
                f"BuildConfig.max_token_length={self.max_token_length!r} must be in [2, 64]"
            )
        if not self.lr > 0:
            raise ConfigError(f"BuildConfig.lr={self.lr!r} must be > 0")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(
                f"BuildConfig.warmup_steps={self.warmup_steps!r} must be in [0, steps={self.steps})"
            )
        for name in ("eval_samples", "log_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"BuildConfig.{name}={getattr(self, name)!r} must be >= 0")
        if not self.eval_temperature > 0:
            raise ConfigError(f"BuildConfig.eval_temperature={self.eval_temperature!r} must be > 0")


# -- tokenizer ----------------------------------------------------------------------------------


def train_tokenizer(texts: Iterator[str] | Sequence[str], cfg: BuildConfig) -> Any:
    """A byte-level BPE whose tokens never cross a newline and are at most
    ``cfg.max_token_length`` characters long (a ``tokenizers.Tokenizer``).

    Splitting at newlines only (not at spaces) lets frequent phrases such as ``" import "``
    become one token, which roughly halves sequence lengths against GPT-2-style splitting; and
    since every line boundary is a token boundary, ``encode(prompt) + encode(body)`` equals
    ``encode(prompt + body)`` for a prompt ending in a newline.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[EOS],
        max_token_length=cfg.max_token_length,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def wrap_tokenizer(tokenizer: Any, n_positions: int) -> Any:
    """The ``tokenizers.Tokenizer`` as a transformers fast tokenizer (EOS = PAD = BOS)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=n_positions,
        clean_up_tokenization_spaces=False,
    )


# -- data ---------------------------------------------------------------------------------------


def encode_sample(tokenizer: Any, sample: Sample, eos_id: int, n_positions: int) -> tuple:
    """``(ids, n_prompt)``: prompt ids + body ids + EOS, left-truncated to ``n_positions``."""
    prompt = tokenizer.encode(sample.prompt).ids
    body = [*tokenizer.encode(sample.body).ids, eos_id]
    ids = prompt + body
    if len(ids) > n_positions:  # keep the end: the template and the body matter most
        cut = len(ids) - n_positions
        ids, prompt = ids[cut:], prompt[cut:]
    return ids, len(prompt)


def batches(
    encoded: list[tuple[list[int], int]], cfg: BuildConfig, rng: random.Random
) -> list[list[int]]:
    """Indices of ``encoded`` grouped into batches of similar length, in a seeded order."""
    order = list(range(len(encoded)))
    chunk = cfg.batch_size * cfg.bucket_batches
    out: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: (len(encoded[i][0]), i))
        out += [part[j : j + cfg.batch_size] for j in range(0, len(part), cfg.batch_size)]
    rng.shuffle(out)
    return out


def collate(encoded: list[tuple[list[int], int]], index: list[int], pad_id: int) -> dict:
    """Right-padded ``input_ids``/``attention_mask`` ``(B, T)`` and ``labels`` (−100 off-body)."""
    import torch

    width = max(len(encoded[i][0]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    labels = torch.full((len(index), width), -100, dtype=torch.long)
    for row, i in enumerate(index):
        seq, n_prompt = encoded[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# -- build --------------------------------------------------------------------------------------


def _lr_factor(step: int, cfg: BuildConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _portable_tokenizer_config(path: Path) -> None:
    # transformers 5 writes its own class name, which transformers 4 cannot resolve; the
    # generic fast-tokenizer name loads the same tokenizer.json under both.
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(
    out: str | os.PathLike[str],
    cfg: BuildConfig | None = None,
    *,
    tasks: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Train the tokenizer and the model, save both as a Hugging Face directory at ``out``.

    Args:
        out: output directory (created; files in it are overwritten).
        cfg: settings; default :class:`BuildConfig`.
        tasks: ``(task, n_train)`` pairs for the corpus' built-in prompts (default: every task of
            ``etpo_gym.list_tasks()``).

    Returns:
        The ``build_info.json`` content.
    """
    import torch

    cfg = cfg or BuildConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    try:
        return _build(out, cfg, tasks)
    finally:  # the caller's process (a test session, a notebook) gets its settings back
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def _build(out: Path, cfg: BuildConfig, tasks: Sequence[Any] | None) -> dict[str, Any]:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    started, cpu_started = time.monotonic(), time.process_time()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tasks = builtin_tasks() if tasks is None else list(tasks)
    stream = iter_samples(cfg.seed, tasks=tasks)
    corpus = [next(stream) for _ in range(cfg.steps * cfg.batch_size)]
    n_tok = min(cfg.tokenizer_samples, len(corpus))
    raw = train_tokenizer((t for s in corpus[:n_tok] for t in (s.prompt, s.body)), cfg)
    eos_id = raw.token_to_id(EOS)
    encoded = [encode_sample(raw, s, eos_id, cfg.n_positions) for s in corpus]
    order = batches(encoded, cfg, random.Random(cfg.seed))

    config = GPT2Config(
        vocab_size=raw.get_vocab_size(),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        # No dropout: the stream never repeats a sample, and RL fine-tuning in train mode then
        # starts with π exactly equal to the frozen reference ρ.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    model = GPT2LMHeadModel(config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    losses: list[float] = []
    for step, index in enumerate(order[: cfg.steps]):
        batch = collate(encoded, index, eos_id)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            recent = sum(losses[-cfg.log_every :]) / len(losses[-cfg.log_every :])
            print(
                f"step {step + 1}/{cfg.steps}  loss {recent:.4f}  "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
    model.eval()

    tokenizer = wrap_tokenizer(raw, cfg.n_positions)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=cfg.eval_temperature,
        top_k=50,
        max_new_tokens=192,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out / "tokenizer_config.json")
    train_s, train_cpu_s = time.monotonic() - started, time.process_time() - cpu_started

    validity: dict[str, Any] = {}
    if cfg.eval_samples:
        validity = measure_validity(model, tokenizer, cfg, tasks)
    tail = losses[-min(len(losses), 50) :]
    info = {
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "corpus_size": len(corpus),
        # The corpus quotes these tasks' prompts: a changed task list changes the build.
        "corpus_tasks": [task.name for task, _ in tasks],
        "corpus_estimators": len({s.estimator for s in corpus}),
        "tokenizer_vocab": raw.get_vocab_size(),
        "mean_prompt_tokens": round(sum(n for _, n in encoded) / len(encoded), 1),
        "mean_body_tokens": round(sum(len(s) - n for s, n in encoded) / len(encoded), 1),
        "steps": cfg.steps,
        "final_loss": round(sum(tail) / len(tail), 4),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu_s, 1),
        **validity,
        "weights_sha256": sha256_file(out / "model.safetensors"),
        "versions": _versions(),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def measure_validity(
    model: Any, tokenizer: Any, cfg: BuildConfig, tasks: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Sample ``cfg.eval_samples`` bodies for fresh corpus prompts (seed ``cfg.seed + 1``) and
    fit each one in-process on toy data shaped like its prompt's task."""
    from .sample import check_body, final_estimator, sample_bodies

    stream = iter_samples(cfg.seed + 1, tasks=tasks, reflection_share=0.0)
    prompts = [next(stream) for _ in range(max(1, cfg.eval_samples // 8))]
    results: list[bool] = []
    estimators: Counter[str] = Counter()
    for i, sample in enumerate(prompts):
        n = min(8, cfg.eval_samples - 8 * i)
        bodies = sample_bodies(
            model,
            tokenizer,
            sample.prompt,
            n=n,
            temperature=cfg.eval_temperature,
            top_k=50,
            max_new_tokens=192,
            seed=cfg.seed + i,
        )
        for body in bodies:
            error = check_body(body, sample.task_type, sample.is_frame)
            results.append(error is None)
            if error is None:
                estimators[final_estimator(body)] += 1
    return {
        "valid_sample_rate": round(sum(results) / len(results), 4),
        "valid_sample_rate_how": (
            f"{len(results)} bodies at temperature {cfg.eval_temperature}, top-k 50, fitted "
            "in-process on toy data shaped like each prompt's task"
        ),
        "valid_estimators": dict(sorted(estimators.items())),
    }


def _versions() -> dict[str, str]:
    import sys

    import tokenizers
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m etpo_agents.starter.build --out DIR [--seed N] [...]``."""
    defaults = BuildConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (a Hugging Face model dir)")
    for field in dataclasses.fields(BuildConfig):
        kind = type(getattr(defaults, field.name))
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, field.name),
            help="(default: %(default)s)",
        )
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    try:
        cfg = BuildConfig(**args)
    except ValueError as exc:
        parser.error(str(exc))
    info = build(out, cfg)
    print(json.dumps({k: v for k, v in info.items() if k not in ("config", "versions")}, indent=2))


if __name__ == "__main__":
    main()
