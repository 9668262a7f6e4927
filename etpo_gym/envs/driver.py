"""The cell the env sends to the kernel for one step.

One round trip per step: the agent's source is embedded as a string literal, executed into the
kernel's namespace under the file name ``<agent>`` (so tracebacks show the agent's lines), then
``build_model`` is called on the data files and the predictions for the evaluation rows are saved
to ``$ETPO_OUT_DIR/pred.npy``. The host validates and scores them: nothing here is trusted.
"""

from __future__ import annotations

PRED_FILE = "pred.npy"

_DRIVER = """\
_etpo_src = {source!r}
import linecache as _etpo_lc
_etpo_lc.cache["<agent>"] = (len(_etpo_src), None, _etpo_src.splitlines(True), "<agent>")
globals().pop("build_model", None)
exec(compile(_etpo_src, "<agent>", "exec"))


def _etpo_run(task_type, n_classes):
    import os
    import numpy as np

    data, out = os.environ["ETPO_DATA_DIR"], os.environ["ETPO_OUT_DIR"]
    target = os.path.join(out, "{pred}")
    if os.path.isdir(target) and not os.path.islink(target):
        import shutil

        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.remove(target)

    def load(name):
        path = os.path.join(data, name + ".npy")
        if os.path.exists(path):
            return np.load(path, allow_pickle=False)
        import pandas as pd

        return pd.read_pickle(os.path.join(data, name + ".pkl"))

    x_train, y_train, x_eval = load("x_train"), load("y_train"), load("x_eval")
    if not callable(globals().get("build_model")):
        raise NameError("the code does not define a function build_model(x_train, y_train)")
    model = build_model(x_train, y_train)
    if model is None:
        raise ValueError("build_model returned None: it must return the fitted model")
    try:
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
    except NotFittedError:
        model.fit(x_train, y_train)  # a returned, unfitted estimator is fitted here
    except Exception:
        pass  # not a scikit-learn estimator: use it as it is
    if task_type == "regression":
        pred = np.asarray(model.predict(x_eval), dtype=float).reshape(-1)
    else:
        if not hasattr(model, "predict_proba"):
            raise AttributeError(
                f"{{type(model).__name__}} has no predict_proba: ROC AUC needs class "
                "probabilities (e.g. SVC(probability=True), or another classifier)"
            )
        proba = np.asarray(model.predict_proba(x_eval), dtype=float)
        if proba.ndim != 2 or proba.shape[0] != len(x_eval):
            raise ValueError(
                f"predict_proba returned shape {{proba.shape}}; expected ({{len(x_eval)}}, n_classes)"
            )
        classes = getattr(model, "classes_", None)
        if classes is not None and len(classes) == proba.shape[1]:
            full = np.zeros((proba.shape[0], n_classes))
            for column, label in enumerate(np.asarray(classes)):
                if isinstance(label, (int, np.integer)) and 0 <= label < n_classes:
                    full[:, int(label)] = proba[:, column]
            proba = full
        pred = proba[:, 1] if task_type == "binary" else proba
    np.save(target, np.ascontiguousarray(pred, dtype=float), allow_pickle=False)


_etpo_run({task_type!r}, {n_classes})
del _etpo_run, _etpo_src, _etpo_lc
"""


def driver_cell(source: str, task_type: str, n_classes: int | None) -> str:
    """The kernel cell that runs ``source`` (a ``def build_model``) and saves its predictions."""
    return _DRIVER.format(
        source=source, pred=PRED_FILE, task_type=task_type, n_classes=n_classes or 0
    )
