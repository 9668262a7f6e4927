"""etpo-gym: Gymnasium environments where an agent writes data-science code.

``import etpo_gym`` registers the environments::

    import gymnasium as gym
    import etpo_gym

    env = gym.make("DataSci-v0", task="breast_cancer", sandbox="local")

Registered ids: ``DataSci-v0`` (ETPO-style prompt, holdout scoring), ``DataSciRich-v0`` (rich
prompt with a column table), ``DataSciPaper-v0`` (the paper's protocol: mean of 5 random 50/50
splits) and ``DataSciNotebook-v0`` (explore in a live kernel, one cell per step, then submit).
For trainers: :func:`prompt_dataset` (first observations without kernels), :func:`score_batch`
(one-step rewards on a pool of warm sandboxes), :mod:`etpo_gym.tools` (tool schemas and a
tool-call wrapper), :mod:`etpo_gym.integrations.trl`. ``etpo_gym`` never imports torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from gymnasium.envs.registration import register, registry

from etpo_gym.errors import (
    ConfigError,
    EngineUnavailable,
    EtpoGymError,
    ImageBuildError,
    ImageMissing,
    KernelStartError,
    OutputError,
    SandboxError,
    SandboxUnavailable,
    TaskError,
)
from etpo_gym.tasks import get_task, list_tasks, task_names
from etpo_gym.tasks.base import Dataset, Task

try:
    __version__ = version("etpo-gym")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

ENV_IDS: tuple[str, ...] = ("DataSci-v0", "DataSciRich-v0", "DataSciPaper-v0", "DataSciNotebook-v0")
_ENTRY = "etpo_gym.envs.datasci:DataSciEnv"
_NOTEBOOK_ENTRY = "etpo_gym.envs.datasci_notebook:DataSciNotebookEnv"
# nondeterministic: a step's outcome may depend on wall-clock limits (timeouts), and info
# carries timings; same seed + same deterministic code still gives the same reward (tested).
_VARIANTS = {
    "DataSci-v0": {},
    "DataSciRich-v0": {"prompt_style": "rich"},
    "DataSciPaper-v0": {"protocol": "etpo"},
}
for _id, _kwargs in _VARIANTS.items():
    if _id not in registry:
        register(id=_id, entry_point=_ENTRY, kwargs=_kwargs, nondeterministic=True)
if "DataSciNotebook-v0" not in registry:
    register(id="DataSciNotebook-v0", entry_point=_NOTEBOOK_ENTRY, nondeterministic=True)

from etpo_gym.batch import ScoringPool, prompt_dataset, score_batch  # noqa: E402

__all__ = [
    "ENV_IDS",
    "ConfigError",
    "Dataset",
    "EngineUnavailable",
    "EtpoGymError",
    "ImageBuildError",
    "ImageMissing",
    "KernelStartError",
    "OutputError",
    "SandboxError",
    "SandboxUnavailable",
    "ScoringPool",
    "Task",
    "TaskError",
    "__version__",
    "get_task",
    "list_tasks",
    "prompt_dataset",
    "score_batch",
    "task_names",
]
