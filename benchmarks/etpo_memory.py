"""How much memory ETPO needs for a 7B Llama-shaped model, from what the code allocates.

Measured on scaled-down Llama-shaped models (Llama-2-7B's vocabulary of 32 000 and head size
of 128, 1-2 layers of width 256-512), with the real ``EtpoModels`` (the default ``q_param``,
``head``: Q is a float32 head over the vocabulary), optimizers and losses:

* weights, gradients and optimizer states: bytes per parameter of each role, read off the
  tensors after one real update, times the role's parameter count at 7B (counted exactly on a
  ``meta``-device Llama-2-7B with the same LoRA adapters: nothing is allocated);
* activations kept for backward: the tensors autograd saves in the critic and the actor step
  (``saved_tensors_hooks``, each storage counted once), fitted to
  ``layers·B·S·(a·width + c·heads·S) + B·(T+1)·(v·V)`` from measurements that vary the width,
  the layers and the sequence length, then evaluated at 7B;
* logits held outside autograd during an update (ρ's and π's over the action, Q's).

Assumptions (state them with the figures): batch B = 8 sequences of S = 512 tokens of which
T = 256 are the action (logits are computed for the action positions only); bf16 compute; no
activation checkpointing; attention as this machine's PyTorch runs it (the fit's ``c`` term is
what is saved per attention score; fused GPU kernels save none); the peak is the larger of the
critic and the actor step, plus everything resident. CUDA's allocator adds fragmentation and
workspace that no count of tensors sees.

    python benchmarks/etpo_memory.py [--lora-r 16]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from etpo_agents.etpo import soft_bellman as sb
from etpo_agents.etpo.models import EtpoModels
from etpo_agents.etpo.optim import make_optimizer

GIB = 1024**3
LLAMA_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
)
B, S, T = 8, 512, 256  # the 7B scenario: batch, tokens per sequence, action tokens


def llama_dir(root: Path, width: int, layers: int) -> Path:
    """A random Llama-shaped model (7B's vocabulary and head size) with the starter's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from etpo_agents.starter import starter_path

    path = root / f"llama_{width}x{layers}"
    if (path / "config.json").is_file():
        return path
    heads = width // 128  # Llama-2-7B's head size
    config = LlamaConfig(
        **{
            **LLAMA_7B,
            "hidden_size": width,
            "intermediate_size": width * 11008 // 4096,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
        },
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(starter_path()).save_pretrained(path)
    return path


def saved_bytes(fn: Callable[[], torch.Tensor], vocab: int, exclude: set[int]) -> tuple[int, int]:
    """Bytes autograd saves for backward while ``fn`` builds its loss: (vocab-sized, other).
    Storages in ``exclude`` (the models' own weights, resident anyway) are not counted."""
    seen: dict[int, tuple[int, bool]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = (storage.nbytes(), t.shape[-1:] == (vocab,))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn().backward()
    big = sum(n for n, is_vocab in seen.values() if is_vocab)
    return big, sum(n for n, _ in seen.values()) - big


def step_activations(models: EtpoModels, batch: int, seq: int, action: int) -> dict[str, tuple]:
    """Saved bytes of the critic and the actor step on random token ids."""
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, 1000, (batch, seq - action), generator=g).tolist()
    actions = torch.randint(1, 1000, (batch, action), generator=g).tolist()
    acts = torch.tensor(actions)
    mask = torch.ones(batch, action, dtype=torch.bool)
    vocab = _vocab(models)
    module = models.pi if models.mode == "full" else models.peft
    modules = [module] + ([models.q, models.q_target, models.rho] if models.mode == "full" else [])
    modules += [
        m
        for m in (models.q_head, models.q_target_head, models.q_value, models.q_target_value)
        if m is not None
    ]
    weights = {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}
    with torch.no_grad():
        rho = models.action_logits("rho", prompts, actions)[:, :action]

    def critic() -> torch.Tensor:  # as etpo_update's critic step does it (q_param head)
        q = models.action_logits("q", prompts, actions, grad=True)[:, :action]
        return sb.critic_loss(q, acts, torch.zeros(acts.shape), mask)

    def actor() -> torch.Tensor:
        with torch.no_grad():
            q_now = models.action_logits("q", prompts, actions)[:, :action]
        pi = models.action_logits("pi", prompts, actions, grad=True)[:, :action]
        return sb.policy_loss(pi, rho, q_now, mask, 0.1)

    return {
        "critic": saved_bytes(critic, vocab, weights),
        "actor": saved_bytes(actor, vocab, weights),
    }


def _vocab(models: EtpoModels) -> int:
    module = models.pi if models.mode == "full" else models.peft
    return int(module.get_output_embeddings().weight.shape[0])


def resident_bytes_per_param(models: EtpoModels) -> dict[str, float]:
    """Bytes per parameter after one real update: of parameters that were trained (weights,
    gradients, AdamW states), of Q̄'s and of the frozen ones (weights only)."""
    critic_opt = make_optimizer(models.critic_parameters(), "adamw", 1e-5)
    actor_opt = make_optimizer(models.policy_parameters(), "adamw", 1e-5, eps=1e-5)
    ids = [[5, 6, 7]]
    for opt, role in ((critic_opt, "q"), (actor_opt, "pi")):
        logits, values = models.action_outputs(role, ids, [[8, 9]], grad=True)
        loss = logits.float().mean() + (values.mean() if values is not None else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def per_param(params: list[torch.Tensor], opts: list[torch.optim.Optimizer]) -> float:
        total = sum(p.numel() * p.element_size() for p in params)
        total += sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        for opt in opts:
            for p in params:
                for k, v in opt.state.get(p, {}).items():
                    if torch.is_tensor(v) and k != "step":
                        total += v.numel() * v.element_size()
        return total / sum(p.numel() for p in params)

    trained = [
        p for p in models.policy_parameters() + models.critic_parameters() if p.grad is not None
    ]
    frozen = (
        list(models.rho.parameters())
        if models.mode == "full"
        else [p for n, p in models.peft.named_parameters() if "lora_" not in n]
    )
    return {
        "trained": per_param(trained, [critic_opt, actor_opt]),
        "q_target": per_param(models._q_target_params, []),
        "frozen": per_param(frozen, []),
    }


def counts_7b(lora_r: int) -> dict[str, int]:
    """Parameter counts at Llama-2-7B, on the meta device: base, one LoRA adapter, LM head."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_7B))
    base = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings().weight.numel()
    lora = LoraConfig(
        r=lora_r,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        task_type="CAUSAL_LM",
    )
    linear = linear_weights(model)
    adapter = sum(
        p.numel() for n, p in get_peft_model(model, lora).named_parameters() if "lora_" in n
    )
    return {
        "base": base,
        "adapter": adapter,
        "head": head,
        "linear": linear,
        "value_head": LLAMA_7B["hidden_size"] + 1,
    }


def linear_weights(model: torch.nn.Module) -> int:
    """Parameters in the weights of ``nn.Linear`` layers (what autocast copies to bf16)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def fit_activations(root: Path, mode: str, lora_r: int) -> dict[str, float]:
    """Saved bytes per step, split by measuring each model at batch 1 and 2:

    * per sequence: ``layers·S·(a·width + c·heads·S) + e·S·width`` (least squares over widths,
      layers and lengths) plus ``v`` bytes per action position for the vocabulary-sized tensors;
    * per model (independent of the batch: autocast's bf16 copies of float32 weights): ``w``
      bytes per ``nn.Linear`` weight parameter.
    """
    points = []
    for width, layers, seq in ((256, 1, 128), (256, 2, 128), (512, 2, 128), (256, 2, 256)):
        models = EtpoModels(
            llama_dir(root, width, layers), mode=mode, dtype="bfloat16", lora_r=lora_r
        )
        one, two = (step_activations(models, b, seq, seq // 2) for b in (1, 2))
        module = models.pi if mode == "full" else models.peft
        points.append((width, layers, seq, seq // 2, linear_weights(module), one, two))
    out: dict[str, float] = {}
    for step in ("critic", "actor"):
        rows, ys, vocab, fixed = [], [], [], []
        for width, layers, seq, t, n_linear, one, two in points:
            per_seq_vocab = two[step][0] - one[step][0]
            per_seq = two[step][1] - one[step][1]
            vocab.append(per_seq_vocab / t)
            fixed.append((one[step][1] - per_seq) / n_linear)
            rows.append([layers * seq * width, layers * seq * (width // 128) * seq, seq * width])
            ys.append(per_seq)
        a, c, e = np.linalg.lstsq(np.array(rows, dtype=float), np.array(ys, dtype=float))[0]
        out |= {f"{step}_a": a, f"{step}_c": c, f"{step}_e": e}
        out[f"{step}_v"] = float(np.mean(vocab))
        out[f"{step}_w"] = float(np.mean(fixed))
    return {k: float(v) for k, v in out.items()}


def table(mode: str, lora_r: int, per_param: dict[str, float], fit: dict[str, float]) -> dict:
    n = counts_7b(lora_r)
    width, layers = LLAMA_7B["hidden_size"], LLAMA_7B["num_hidden_layers"]
    heads, vocab = LLAMA_7B["num_attention_heads"], LLAMA_7B["vocab_size"]
    rows: dict[str, float] = {}
    head = n["head"] + LLAMA_7B["vocab_size"]  # Q's vocabulary head: weight and bias
    trained, q_bar, frozen = per_param["trained"], per_param["q_target"], per_param["frozen"]
    if mode == "full":
        rows["π: weights + grads + AdamW"] = trained * n["base"]
        # Q's copy keeps its own LM head, unused (weights only) beside the vocabulary head
        rows["Q: weights + grads + AdamW"] = trained * (n["base"] - n["head"]) + q_bar * n["head"]
        rows["Q's vocabulary head: weights + grads + AdamW"] = trained * head
        rows["Q̄ incl. head: weights (float32)"] = q_bar * (n["base"] + head)
        rows["ρ: weights (bf16)"] = frozen * n["base"]
    else:
        rows["base (bf16, frozen; ρ)"] = frozen * n["base"]
        rows[f"π adapter r={lora_r}: weights + grads + AdamW"] = trained * n["adapter"]
        rows[f"Q adapter r={lora_r}: weights + grads + AdamW"] = trained * n["adapter"]
        rows["Q's vocabulary head: weights + grads + AdamW"] = trained * head
        rows["Q̄ adapter + head (float32)"] = q_bar * (n["adapter"] + head)
    steps = {}
    for step in ("critic", "actor"):
        per_seq = layers * S * (fit[f"{step}_a"] * width + fit[f"{step}_c"] * heads * S)
        per_seq += fit[f"{step}_e"] * S * width + fit[f"{step}_v"] * T
        steps[step] = (B * per_seq, fit[f"{step}_w"] * n["linear"])
    peak_step = max(steps, key=lambda k: sum(steps[k]))
    per_batch, per_model = steps[peak_step]
    rows[f"saved for backward, {peak_step} step (B={B}×{S}, T={T})"] = per_batch
    if per_model > 0.01 * GIB:
        rows[f"saved, independent of the batch (autocast weight copies), {peak_step} step"] = (
            per_model
        )
    # ρ's and π's logits over the action live through the update (compute dtype), Q's in the
    # actor step
    rows["logits held during the update (3 × B×(T+1)×V bf16)"] = 3 * B * (T + 1) * vocab * 2
    return {k: v / GIB for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for mode in ("full", "lora"):
            small = EtpoModels(
                llama_dir(root, 256, 1), mode=mode, dtype="bfloat16", lora_r=args.lora_r
            )
            per_param = resident_bytes_per_param(small)
            fit = fit_activations(root, mode, args.lora_r)
            rows = table(mode, args.lora_r, per_param, fit)
            print(f"\n{mode}: bytes per parameter measured " + ", ".join(
                f"{k} {v:.2f}" for k, v in per_param.items()))  # fmt: skip
            print("  activation fit: " + ", ".join(f"{k} {v:.3g}" for k, v in fit.items()))
            print(f"  Llama-2-7B, GiB: total {sum(rows.values()):.1f}")
            for name, value in rows.items():
                print(f"    {name:<66}{value:>7.2f}")


if __name__ == "__main__":
    main()
