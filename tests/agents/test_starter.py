"""The starter policy: shipped checkpoint, corpus generator, deterministic build, sampling."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from etpo_agents.starter import starter_path
from etpo_agents.starter.corpus import (
    CLASSIFIERS,
    REGRESSORS,
    generate_body,
    generate_corpus,
    iter_samples,
)
from etpo_agents.starter.sample import check_body, final_estimator
from etpo_gym.errors import ConfigError
from etpo_gym.prompts import FILL_ME, action_to_code

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Fake-task prompts only: the built-in task list belongs to another module and may change.
NO_BUILTINS: list = []


@pytest.fixture(scope="module")
def starter():
    from etpo_agents.starter import load_starter

    return load_starter()


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names imported by ``from sklearn... import`` and names loaded, in a parsed body."""
    imported, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loaded.add(node.id)
    return imported, loaded


# -- shipped checkpoint -------------------------------------------------------------------------


def test_checkpoint_is_a_complete_hf_dir_and_its_hash_matches_build_info():
    from etpo_agents.starter.build import sha256_file

    path = starter_path()
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "build_info.json",
    ):
        assert (path / name).is_file(), f"{name} missing from the shipped checkpoint {path}"
    info = json.loads((path / "build_info.json").read_text())
    assert sha256_file(path / "model.safetensors") == info["weights_sha256"]
    assert (path / "model.safetensors").stat().st_size <= 8 * 2**20


def test_load_starter_gives_a_causal_lm_with_eos_as_pad(starter):
    model, tokenizer = starter
    assert not model.training
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == model.config.eos_token_id
    info = json.loads((starter_path() / "build_info.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == info["n_parameters"]
    # No token crosses a newline: a prompt's ids are a prefix of prompt + body's ids.
    prompt, body = "def f():\n<FILL_ME>\n", "    x = 1\n    return x"
    assert tokenizer(prompt + body).input_ids[: len(tokenizer(prompt).input_ids)] == (
        tokenizer(prompt).input_ids
    )


def test_starter_samples_parse_as_python_and_are_seeded(starter):
    from etpo_agents.starter.sample import sample_bodies

    model, tokenizer = starter
    sample = next(iter_samples(11, tasks=NO_BUILTINS, reflection_share=0.0))
    bodies = sample_bodies(model, tokenizer, sample.prompt, n=6, temperature=0.8, seed=3)
    assert len(bodies) == 6
    parsed = 0
    for body in bodies:
        try:
            ast.parse(action_to_code(body))
            parsed += 1
        except SyntaxError:
            pass
    assert parsed >= 4, bodies
    assert sample_bodies(model, tokenizer, sample.prompt, n=6, temperature=0.8, seed=3) == bodies
    other = sample_bodies(model, tokenizer, sample.prompt, n=6, temperature=0.8, seed=4)
    assert other != bodies


def test_sample_bodies_truncates_a_prompt_longer_than_the_context(starter):
    from etpo_agents.starter.sample import sample_bodies

    model, tokenizer = starter
    long_prompt = "# filler line\n" * 2000 + "def build_model(x_train, y_train):\n<FILL_ME>\n"
    (body,) = sample_bodies(model, tokenizer, long_prompt, n=1, max_new_tokens=8, seed=0)
    assert isinstance(body, str)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        sample_bodies(model, tokenizer, long_prompt, n=1, max_new_tokens=10**6)


def test_importing_the_starter_package_does_not_import_torch():
    code = (
        "import sys, etpo_agents, etpo_agents.starter, etpo_agents.starter.corpus\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(etpo_agents.starter.starter_path())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("checkpoint")


# -- corpus -------------------------------------------------------------------------------------


def test_corpus_is_deterministic_in_its_seed():
    first = generate_corpus(60, seed=5, tasks=NO_BUILTINS)
    assert first == generate_corpus(60, seed=5, tasks=NO_BUILTINS)
    assert first != generate_corpus(60, seed=6, tasks=NO_BUILTINS)


def test_corpus_bodies_are_uniform_consistent_and_fit_their_prompt():
    samples = generate_corpus(400, seed=0, tasks=NO_BUILTINS)
    estimators = Counter()
    for sample in samples:
        lines = sample.body.split("\n")
        assert all(line == "" or line.startswith("    ") for line in lines), sample.body
        assert lines[-1] == "    return model"
        imports = [line for line in lines if "import" in line]
        assert all(re.fullmatch(r"    from sklearn\.[a-z_.]+ import \w+", ln) for ln in imports)
        assert imports == sorted(imports)
        assert sample.prompt.rstrip().endswith("    return model")
        assert FILL_ME in sample.prompt
        tree = ast.parse(action_to_code(sample.body))
        imported, loaded = _names(tree)
        # Every imported name is used and every capitalised/make_ name used is imported: the
        # inconsistencies that made most early starter samples fail.
        used = {n for n in loaded if n[0].isupper() or n.startswith(("make_", "f_"))}
        assert imported == used, sample.body
        assert ("pandas DataFrame" in sample.prompt) == sample.is_frame
        assert ("make_column_transformer" in sample.body) == sample.is_frame
        menu = REGRESSORS if sample.task_type == "regression" else CLASSIFIERS
        assert sample.estimator in menu
        assert final_estimator(sample.body) == sample.estimator
        estimators[sample.estimator] += 1
    assert set(estimators) == set(CLASSIFIERS) | set(REGRESSORS)
    assert sum("Your previous code" in s.prompt for s in samples) > 10  # reflection prompts


@pytest.mark.parametrize(
    ("task_type", "is_frame"),
    [("binary", False), ("multiclass", True), ("binary", True), ("regression", True)],
)
def test_corpus_bodies_fit_toy_data_in_process(task_type, is_frame):
    import random

    rng = random.Random(f"{task_type}-{is_frame}")
    menu = REGRESSORS if task_type == "regression" else CLASSIFIERS
    for estimator in menu:  # every estimator, so every branch of the generator runs
        body = generate_body(rng, task_type, is_frame, estimator=estimator)
        assert check_body(body.text, task_type, is_frame) is None, body.text


def test_check_body_reports_what_breaks():
    numeric_only = (
        "    from sklearn.linear_model import LogisticRegression\n\n"
        "    model = LogisticRegression()\n    model.fit(x_train, y_train)\n    return model"
    )
    assert check_body(numeric_only, "binary", is_frame=False) is None
    error = check_body(numeric_only, "binary", is_frame=True)  # strings and NaNs
    assert error is not None and error.startswith("ValueError")
    assert check_body("    model = (", "binary", False).startswith("SyntaxError")
    regressor = numeric_only.replace("LogisticRegression", "Ridge")
    assert "predict_proba" in check_body(regressor, "binary", is_frame=False)


def test_generate_body_rejects_an_unknown_task_type():
    import random

    with pytest.raises(ConfigError, match="task_type='ranking'"):
        generate_body(random.Random(0), "ranking", False)


# -- build --------------------------------------------------------------------------------------


def _tiny(seed: int = 0, **overrides):
    from etpo_agents.starter.build import BuildConfig

    settings = dict(
        seed=seed,
        steps=20,
        batch_size=8,
        warmup_steps=2,
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_positions=512,
        vocab_size=400,
        tokenizer_samples=100,
        eval_samples=0,
        log_every=0,
        threads=1,
    )
    settings.update(overrides)
    return BuildConfig(**settings)


def test_tiny_build_is_bit_identical_for_a_seed_and_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from etpo_agents.starter.build import build

    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    a = build(tmp_path / "a", _tiny(0), tasks=NO_BUILTINS)
    b = build(tmp_path / "b", _tiny(0), tasks=NO_BUILTINS)
    c = build(tmp_path / "c", _tiny(1), tasks=NO_BUILTINS)
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()
    assert a["final_loss"] < 6.0  # down from ln(400) ≈ 6.0 at initialisation
    # The caller's torch settings are restored.
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before
    assert torch.get_num_threads() == threads_before

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert model.config.n_layer == 1 and tokenizer.eos_token == "<|endoftext|>"
    info = json.loads((tmp_path / "a" / "build_info.json").read_text())
    assert info["corpus_size"] == 20 * 8 and info["seed"] == 0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_head", 3, "n_embd=32 must be divisible by n_head=3"),
        ("steps", 0, "BuildConfig.steps=0"),
        ("vocab_size", 100, r"BuildConfig.vocab_size=100 must be in \[300, 65536\]"),
        ("warmup_steps", 20, r"BuildConfig.warmup_steps=20 must be in \[0, steps=20\)"),
    ],
)
def test_build_config_names_the_bad_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        _tiny(**{field: value})


def test_build_cli_rejects_bad_settings_with_a_usage_error(tmp_path, capsys):
    from etpo_agents.starter.build import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--n-embd", "130"])
    assert exc.value.code == 2
    assert "n_embd=130 must be divisible by n_head=4" in capsys.readouterr().err
