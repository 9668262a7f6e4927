"""Every attack class of issue #8 (and more), through the public env API, on every backend.

One test per class, parametrised over the class's probes (``attacks.py``). Each run asserts, per
``SANDBOX_CONTRACT.md``: the exact statuses the contract allows, the reward (``error_reward`` for
a failure; finite, at least ``error_reward`` and at chance on a noise task for ``ok``), the
``KernelProtocolError`` prefix and the truncation marker where they apply, ``state_lost`` after
``oom``/``killed``, the host's peak RSS growth where the kernel floods it, that no exception
escaped ``reset``/``step``/``close``, that the next step works, and, after probes that change
more than messages, that a whole new episode works. A breach a probe reports is accepted only
where the contract documents it for the isolation level the env reports (and then the result must
carry that label). The harness's ``Outcome.summary()`` is the failure message.

Probes marked ``beyond_contract`` test rules the contract does not state yet: they are expected
failures (not strict) until the rule is adopted. To keep the suite's wall time modest it runs each
distinct mechanism of every class (``TESTED``), and the slow probes (memory and disk up to their
bounds, a scan of the file system, timeouts waited out where a sibling probe covers both
backends) on one backend each (``SLOW_ON``); ``benchmarks/adversarial.py`` runs every probe on
every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .attacks import ATTACKS, ISOLATIONS, Attack, of_class
from .harness import HONEST, EnvPool, run_attack

#: The probes the test suite runs: every class, each distinct mechanism of it (the benchmark
#: runs all the others too, on every backend). Cheap classes run in full.
TESTED = frozenset(
    {
        # protocol: each way the host's parser can fail, signed lies, sizes, floods, recording
        "iopub_bad_signature",
        "iopub_unsigned",
        "iopub_parent_not_dict",
        "iopub_header_missing_fields",
        "iopub_invalid_json",
        "iopub_deep_json",
        "iopub_huge_int",
        "iopub_bad_date",
        "iopub_no_delimiter",
        "iopub_stream_text_not_str",
        "iopub_flood_unsigned",
        "iopub_fake_idle",
        "iopub_fake_error_keyboardinterrupt",
        "iopub_huge_buffers",
        "iopub_oversized_frame",
        "iopub_flood_signed",
        "shell_bad_signature",
        "shell_garbage",
        "shell_fake_reply_ok",
        "shell_huge_reply",
        "recorded_bad_execute_result",
        # flood
        "print_50mb_lines",
        "print_50mb_once",
        "display_huge_text",
        "huge_exception_message",
        "fd1_direct_write",
        # prediction files
        "pred_zip",
        "pred_header_1e11",
        "pred_header_1e9",
        "pred_header_nested",
        "pred_fifo",
        "pred_symlink_dev_zero",
        "pred_directory",
        "pred_object_pickle",
        "pred_structured",
        "pred_big_endian",
        "pred_sparse_10gb",
        "pred_race_swap",
        "pred_outdir_symlink",
        "pred_fill_out_volume",
        # extreme predictions
        "reg_1e200",
        "reg_1e150",
        "reg_nan",
        "rmse_1e200",
        "bin_above_one",
        "bin_constant",
        "multi_zero_rows",
        "reg_huge_ints",
        # statuses faked by the code
        "raise_keyboardinterrupt",
        "raise_memoryerror",
        "raise_systemexit",
        "raise_sandbox_lookalike",
        # kernel death
        "os_exit_7",
        "sigkill_self",
        "sigsegv",
        "sigstop_self",
        "ignore_sigint_busy",
        "catch_interrupt_loop",
        "close_all_fds",
        "kill_minus_one",
        # carry-over across the paper protocol's splits
        "splits_memory",
        "splits_files",
    }
    | {
        a.name
        for a in ATTACKS
        if a.cls
        in (
            "data_lookup",
            "row_order",
            "persistence",
            "resources",
            "privilege",
            "symlinks",
            "network",
            "cross_sandbox",
            "input",
        )
    }
)

#: Where each slow probe runs in the test suite (the benchmark runs it everywhere). Also probes
#: that wait out a timeout or run ten kernels to test a mechanism the shared kernel core owns,
#: where a sibling probe already covers each backend's own part: ``ignore_sigint_busy`` (both
#: backends) the interrupt → kill escalation, ``splits_memory`` and ``episodes_files`` (both) a
#: fresh kernel per split and the wipe of writable places.
SLOW_ON = {
    "memory_children": "local",
    "memory_gradual_hog": "docker",
    "disk_fill": "local",
    "cross_sandbox_files": "local",
    "action_20mb": "docker",
    "sigstop_self": "docker",
    "catch_interrupt_loop": "local",
    "splits_files": "docker",
}


#: Attacks that still win against the sandbox, per backend, reported to its owners: expected
#: failures (not strict: a fix turns them into passes) until the sandbox is fixed.
OPEN: dict[tuple[str, str], str] = {}


def _cases(cls: str) -> list:
    cases = []
    for attack in of_class(cls):
        if attack.name not in TESTED:
            continue
        marks = []
        if attack.beyond_contract:
            marks.append(pytest.mark.xfail(reason=f"beyond the contract: {attack.beyond_contract}"))
        cases.append(pytest.param(attack, id=attack.name, marks=marks))
    return cases


def _check(pools: Callable[[str], EnvPool], backend: str, attack: Attack) -> None:
    if backend not in attack.backends:
        pytest.skip(f"{attack.name} does not apply to {backend}")
    if SLOW_ON.get(attack.name, backend) != backend:
        pytest.skip(f"slow probe: the test suite runs it on {SLOW_ON[attack.name]} only")
    outcome = run_attack(pools(backend), attack)
    if outcome.verdict == "skipped" or outcome.needs_stronger:
        pytest.skip(outcome.note)
    if not outcome.passed and (attack.name, backend) in OPEN:
        pytest.xfail(f"open: {OPEN[attack.name, backend]}\n{outcome.summary()}")
    assert outcome.passed, outcome.summary()


def test_results_carry_the_isolation_level(pools, backend: str) -> None:
    """``info["isolation"]`` says how far the result can be trusted: Docker is ``container``;
    the local backend is ``none`` or ``namespaces``, never more."""
    attack = of_class("input")[0]
    env = pools(backend).env(attack)
    env.reset(seed=7)
    _, _, _, _, info = env.step(HONEST)
    assert info["status"] == "ok", info["error"]
    assert info.get("isolation") in ISOLATIONS, info.get("isolation")
    expected = {"docker": {"container"}, "local": {"none", "namespaces"}}[backend]
    assert info["isolation"] in expected


@pytest.mark.parametrize("attack", _cases("protocol"))
def test_forged_kernel_messages_are_the_agents_error(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("flood"))
def test_output_floods_are_capped(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("prediction_file"))
def test_crafted_prediction_files_are_refused(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("extreme_predictions"))
def test_extreme_predictions_give_a_finite_honest_reward(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("fake_status"))
def test_statuses_the_code_fakes_are_errors(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("data_lookup"))
def test_task_data_is_not_inside_the_sandbox(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("row_order"))
def test_row_order_carries_no_label(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("carry_over"))
def test_no_label_carries_across_paper_splits(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("persistence"))
def test_nothing_persists_into_the_next_episode(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("kernel_death"))
def test_kernel_death_is_killed_and_recovered(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("resources"))
def test_resource_bombs_hit_limits(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("privilege"))
def test_the_kernel_holds_no_privilege(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("symlinks"))
def test_cleanup_never_follows_or_crashes_on_leftovers(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("network"))
def test_no_network_but_loopback(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("cross_sandbox"))
def test_parallel_sandboxes_do_not_see_each_other(pools, backend, attack):
    _check(pools, backend, attack)


@pytest.mark.parametrize("attack", _cases("input"))
def test_hostile_actions_do_not_break_the_host(pools, backend, attack):
    _check(pools, backend, attack)
