"""The four language models of ETPO: the policy π, the critic Q, the target critic Q̄, the
reference ρ — as full copies, or as one frozen base with LoRA adapters.

``mode="full"`` (as in the paper): π and Q are trainable copies of the base model; Q̄ is a frozen
polyak copy of Q; ρ a frozen copy.

``mode="lora"`` (one GPU for a 7B model): one frozen base with two ``peft`` LoRA adapters, ``pi``
and ``q``, plus ``q_target`` (a polyak copy of ``q``). ρ is the base with the adapters disabled.

How the critic's outputs are read as Q (``q_param``, see ``soft_bellman``):

* ``"head"``: Q is a head over the vocabulary on the critic's last hidden state, initialised to
  zero (so ``Q ≡ 0`` and ``π* = ρ`` at the start, and a token never taken keeps ``Q = 0``).
* ``"dueling"``: ``Q = V + β·(log π_Q − log ρ)``, where ``π_Q`` is the critic LM's softmax and
  ``V`` a scalar value head on its last hidden state, zero at the start (so ``Q ≡ 0`` and
  ``π* = ρ`` at the start). With LoRA, ``π_Q`` is the base's own head through adapter ``q``.
* ``"paper"``: the critic LM's logits are Q. With LoRA, Q and Q̄ read them through their own
  trainable head over the vocabulary (initialised from the base's LM head): a base's head is
  usually tied to its input embeddings, so it cannot be both frozen for π/ρ and trained for Q.

Precision: trainable weights and optimizer states are float32 (master weights), and so is Q̄
(a polyak step ``(1 − τ)·(Q − Q̄)`` with τ = 0.995 is below bf16's resolution of Q̄'s weights).
``dtype`` sets the compute precision (autocast); ρ and, with LoRA, the frozen base are stored in
it. So a 1e-6 learning-rate step is not rounded away as it is when fp16 weights are trained
directly (a defect of the public code); fp16 compute needs the trainer's gradient scaler.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from etpo_gym.errors import ConfigError

from .soft_bellman import polyak_update

MODES = ("full", "lora")
Q_PARAMS = ("head", "dueling", "paper")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ROLES = ("pi", "q", "q_target", "rho")


def resolve_model_path(model: str | Path) -> Path:
    """``"starter"`` → the shipped starter checkpoint; else a local Hugging Face directory."""
    if str(model) == "starter":
        from etpo_agents.starter import starter_path

        path = starter_path()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"the starter checkpoint is missing in {path}; rebuild it with "
                f"`python -m etpo_agents.starter.build --out {path} --seed 0`"
            )
        return path
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model={str(model)!r} is not a local Hugging Face model directory (no config.json); "
            "accepted: 'starter' or a path such as /models/CodeLlama-7b-hf"
        )
    return path


class EtpoModels:
    """Owner of π, Q, Q̄ and ρ for one ETPO run (see the module docstring)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        mode: str = "full",
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        lora_target_modules: Sequence[str] | None = None,
        q_param: str = "head",
        seed: int = 0,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is not known; accepted: {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise ConfigError(f"dtype={dtype!r} is not known; accepted: {', '.join(DTYPES)}")
        if q_param not in Q_PARAMS:
            raise ConfigError(f"q_param={q_param!r} is not known; accepted: {', '.join(Q_PARAMS)}")
        self.path = resolve_model_path(model_path)
        self.mode = mode
        self.q_param = q_param
        self.device = torch.device(device)
        self.dtype = dtype
        self.compute_dtype = DTYPES[dtype]
        torch.manual_seed(seed)

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
        base.config.use_cache = False
        self.context = int(
            getattr(base.config, "n_positions", None)
            or getattr(base.config, "max_position_embeddings", 2048)
        )
        lm_head = base.get_output_embeddings()
        vocab, width = lm_head.weight.shape
        # Heads of Q (trainable, float32) and Q̄ (their float32 polyak copies): the dueling Q's
        # value head and the zero-initialised vocabulary head start at 0, so Q ≡ 0 at the start.
        # A LoRA critic reads the paper's Q through its own copy of the LM head (copied here,
        # before the base is cast: float32 master weights).
        self.q_value = _zero_linear(width, 1) if q_param == "dueling" else None
        self.q_head = None
        if q_param == "head":
            self.q_head = _zero_linear(width, vocab)
        elif q_param == "paper" and mode == "lora":
            self.q_head = _head_copy(lm_head)
        for name in ("q_value", "q_head"):
            module = getattr(self, name)
            if module is not None:
                setattr(self, name, module.to(self.device))
        self.q_target_value, self.q_target_head = (
            None if m is None else _frozen(copy.deepcopy(m), torch.float32)
            for m in (self.q_value, self.q_head)
        )
        if mode == "full":
            self.pi = base.to(self.device)
            self.q = copy.deepcopy(base).to(self.device)
            self.q_target = _frozen(copy.deepcopy(self.q), torch.float32)
            self.rho = _frozen(copy.deepcopy(base), self.compute_dtype)
            # eval(): no dropout in any role (as TRL does for RL): the π and Q that are trained
            # must be the functions that the targets, the KL and the samples come from.
            self.pi.eval()
            self.q.eval()
        else:
            from peft import LoraConfig, get_peft_model

            targets = list(lora_target_modules) if lora_target_modules else _lora_targets(base)
            lora = LoraConfig(
                fan_in_fan_out=type(base).__name__.startswith("GPT2"),
                r=lora_r,
                lora_alpha=lora_alpha,
                lora_dropout=lora_dropout,
                target_modules=targets,
                bias="none",
                task_type="CAUSAL_LM",
            )
            base = _frozen(base, self.compute_dtype)
            self.peft = get_peft_model(base, lora, adapter_name="pi").to(self.device)
            self.peft.add_adapter("q", lora)
            self.peft.add_adapter("q_target", lora)
            for name, p in self.peft.named_parameters():
                if "lora_" in name:  # adapters are float32 whatever the base's dtype
                    p.data = p.data.float()
            self._copy_adapter("q", "q_target")
            self.peft.eval()  # no dropout, as in full mode
        self._pi_params = self._collect("pi")
        self._q_params = self._collect("q")
        self._q_target_params = self._collect("q_target")

    # -- parameters ---------------------------------------------------------------------------

    def _collect(self, role: str) -> list[nn.Parameter]:
        if self.mode == "full":
            return list(getattr(self, role).parameters()) + self._head_params(role)
        params = [p for n, p in self.peft.named_parameters() if f".{role}." in n and "lora_" in n]
        return params + self._head_params(role)

    def _head_params(self, role: str) -> list[nn.Parameter]:
        heads = {
            "q": (self.q_head, self.q_value),
            "q_target": (self.q_target_head, self.q_target_value),
        }.get(role, ())
        return [p for head in heads if head is not None for p in head.parameters()]

    def policy_parameters(self) -> list[nn.Parameter]:
        """π's trainable parameters (float32)."""
        return self._pi_params

    def critic_parameters(self) -> list[nn.Parameter]:
        """Q's trainable parameters (float32)."""
        return self._q_params

    @torch.no_grad()
    def polyak(self, tau: float) -> None:
        """Q̄ ← tau·Q̄ + (1 − tau)·Q, in float32 (Q̄ and Q are float32 in every mode and dtype)."""
        polyak_update(self._q_target_params, self._q_params, tau)

    def _copy_adapter(self, source: str, target: str) -> None:
        named = dict(self.peft.named_parameters())
        with torch.no_grad():
            for name, p in named.items():
                if f".{target}." in name and "lora_" in name:
                    p.copy_(named[name.replace(f".{target}.", f".{source}.")])
                    p.requires_grad_(False)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything a resume needs to restore the models: π, Q, Q̄ trainable tensors."""
        state = {}
        for role, params in (
            ("pi", self._pi_params),
            ("q", self._q_params),
            ("q_target", self._q_target_params),
        ):
            for i, p in enumerate(params):
                state[f"{role}.{i}"] = p.detach().to("cpu", torch.float32).clone()
        return state

    @torch.no_grad()
    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        for role, params in (
            ("pi", self._pi_params),
            ("q", self._q_params),
            ("q_target", self._q_target_params),
        ):
            for i, p in enumerate(params):
                key = f"{role}.{i}"
                if key not in state or state[key].shape != p.shape:
                    raise ConfigError(f"checkpoint does not match this model ({key})")
                p.copy_(state[key].to(p.device, p.dtype))

    # -- forwards -----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    @contextlib.contextmanager
    def _role(self, role: str) -> Iterator[tuple[nn.Module, nn.Module | None]]:
        """(module to call, separate vocabulary head or None) for ``role``."""
        if role not in ROLES:
            raise ConfigError(f"role={role!r} is not known; accepted: {', '.join(ROLES)}")
        if self.mode == "full":
            yield getattr(self, role), {"q": self.q_head, "q_target": self.q_target_head}.get(role)
            return
        if role == "rho":
            with self.peft.disable_adapter():
                yield self.peft, None
            return
        self.peft.set_adapter(role)
        if role == "q_target":  # set_adapter marks the active adapter trainable; Q̄ never is
            for p in self._q_target_params:
                p.requires_grad_(False)
        yield self.peft, {"q": self.q_head, "q_target": self.q_target_head}.get(role)

    def _forward(
        self, role: str, ids: torch.Tensor, attention: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, keep, V) at the last ``keep`` positions of left-padded ``ids``, and, for
        Q and Q̄ with the dueling Q, the value head's output there (B, keep) float32."""
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        value_head = {"q": self.q_value, "q_target": self.q_target_value}.get(role)
        with self._role(role) as (module, head), self._autocast():
            if head is None and value_head is None:
                logits = module(
                    input_ids=ids,
                    attention_mask=attention,
                    position_ids=positions,
                    logits_to_keep=keep,
                ).logits
                return logits, None
            out = module(
                input_ids=ids,
                attention_mask=attention,
                position_ids=positions,
                output_hidden_states=True,
                # a separate head reads the hidden states: the LM's own logits go unused
                logits_to_keep=1 if head is not None else keep,
            )
            hidden = out.hidden_states[-1][:, -keep:]
            logits = out.logits if head is None else head(hidden)
            values = None if value_head is None else value_head(hidden).squeeze(-1).float()
            return logits, values

    def _truncate_prompt(self, prompt: list[int], room: int) -> list[int]:
        keep = max(1, self.context - room)
        return prompt[-keep:]

    def action_logits(
        self,
        role: str,
        prompt_ids: Sequence[Sequence[int]],
        action_ids: Sequence[Sequence[int]],
        *,
        grad: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T+1, V) over each action token (see ``soft_bellman``'s alignment)."""
        return self.action_outputs(role, prompt_ids, action_ids, grad=grad)[0]

    def action_outputs(
        self,
        role: str,
        prompt_ids: Sequence[Sequence[int]],
        action_ids: Sequence[Sequence[int]],
        *,
        grad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T+1, V) over each action token and, for Q/Q̄ with the dueling Q, values
        (B, T+1) float32 at the same positions (else ``None``).

        Rows are laid out ``[pad…, prompt, action, pad…]`` so that the last ``T + 1``
        positions of every row are the action positions; prompts are left-truncated to fit.
        """
        width = max(len(a) for a in action_ids)
        rows, masks = [], []
        for prompt, action in zip(prompt_ids, action_ids):
            prompt = self._truncate_prompt(list(prompt), width + 1)
            tail = width - len(action)
            rows.append([*prompt, *action, *([self.tokenizer.pad_token_id] * tail)])
            masks.append([1] * (len(prompt) + len(action)) + [0] * tail)
        ids, attention = self._left_pad(rows, masks)
        with torch.set_grad_enabled(grad):
            return self._forward(role, ids, attention, width + 1)

    def first_logits(self, role: str, prompt_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Logits (B, V) after each prompt (the first action position); no gradient."""
        return self.first_outputs(role, prompt_ids)[0]

    def first_outputs(
        self, role: str, prompt_ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, V) after each prompt and, as in :meth:`action_outputs`, values (B,)."""
        rows = [self._truncate_prompt(list(p), 1) for p in prompt_ids]
        ids, attention = self._left_pad(rows, [[1] * len(r) for r in rows])
        with torch.no_grad():
            logits, values = self._forward(role, ids, attention, 1)
        return logits[:, 0], None if values is None else values[:, 0]

    def _left_pad(
        self, rows: Sequence[Sequence[int]], masks: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (length - len(r)) + list(r) for r in rows])
        attention = torch.tensor([[0] * (length - len(m)) + list(m) for m in masks])
        return ids.to(self.device), attention.to(self.device)

    # -- sampling -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, whole (callers cut prompts to the context: no warning)."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        temperature: float = 0.8,
        top_k: int = 50,
        max_new_tokens: int = 192,
        seed: int = 0,
    ) -> list[tuple[list[int], list[int], str]]:
        """Sample one action per prompt from π: ``(prompt ids, action ids, decoded body)``.

        The action ids end with EOS when π stopped by itself. The same ``seed`` gives the same
        samples; the caller's torch RNG state is left untouched.
        """
        eos = self.tokenizer.eos_token_id
        encoded = [self._truncate_prompt(self.encode(p), max_new_tokens) for p in prompts]
        ids, attention = self._left_pad(encoded, [[1] * len(e) for e in encoded])
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._role("pi") as (module, _):
            torch.manual_seed(seed)
            was_training = module.training
            module.eval()
            with self._autocast():
                out = module.generate(
                    input_ids=ids,
                    attention_mask=attention,
                    do_sample=True,
                    temperature=float(temperature),
                    top_k=int(top_k),
                    max_new_tokens=int(max_new_tokens),
                    eos_token_id=eos,
                    pad_token_id=self.tokenizer.pad_token_id,
                    use_cache=True,
                )
            module.train(was_training)
        results = []
        for prompt, row in zip(encoded, out[:, ids.shape[1] :].tolist()):
            if eos in row:
                row = row[: row.index(eos) + 1]
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            results.append((prompt, row, text))
        return results

    # -- saving -------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """``directory/models.pt`` (resumable trainable state) and ``directory/policy/`` (π as a
        standard Hugging Face model + tokenizer directory, LoRA merged)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.trainable_state(), directory / "models.pt.tmp")
        (directory / "models.pt.tmp").replace(directory / "models.pt")
        policy = directory / "policy"
        if self.mode == "full":
            self.pi.save_pretrained(policy, safe_serialization=True)
        else:
            merged = copy.deepcopy(self.peft)
            merged.set_adapter("pi")
            merged = merged.merge_and_unload(adapter_names=["pi"])
            merged.save_pretrained(policy, safe_serialization=True)
        self.tokenizer.save_pretrained(policy)
        meta = {
            "base": str(self.path),
            "mode": self.mode,
            "dtype": self.dtype,
            "q_param": self.q_param,
        }
        (directory / "models.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load(self, directory: str | Path) -> None:
        """Restore what :meth:`save` wrote."""
        state = torch.load(Path(directory) / "models.pt", map_location="cpu", weights_only=True)
        self.load_trainable_state(state)

    def memory_report(self) -> dict[str, int]:
        """Bytes of parameters per role (trainable ones float32; optimizer states not included)."""

        def size(params: Sequence[torch.Tensor]) -> int:
            return sum(p.numel() * p.element_size() for p in params)

        shared = (
            {"rho": size(list(self.rho.parameters()))}
            if self.mode == "full"
            else {"base": size([p for n, p in self.peft.named_parameters() if "lora_" not in n])}
        )
        return {
            **shared,
            "pi": size(self._pi_params),
            "q": size(self._q_params),
            "q_target": size(self._q_target_params),
        }


def _frozen(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    module = module.to(dtype)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _zero_linear(width: int, outputs: int) -> nn.Linear:
    """A float32 head ``h ↦ W·h + b`` with ``W = 0, b = 0``: outputs 0 until trained."""
    head = nn.Linear(width, outputs)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def _head_copy(head: nn.Module) -> nn.Linear:
    """A trainable float32 copy of an LM head (weights untied from the embeddings)."""
    weight = head.weight.detach().float().clone()
    bias = getattr(head, "bias", None)
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias.detach().float())
    return out


def _lora_targets(model: nn.Module) -> list[str]:
    """Attention/MLP projection names for common architectures (GPT-2, Llama-like)."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for candidates in (
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ["c_attn", "c_proj", "c_fc"],
        ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    ):
        found = [c for c in candidates if c in names]
        if found:
            return found
    raise ConfigError(
        "cannot guess LoRA target modules for this architecture; pass lora_target_modules"
    )
