"""Give nbval a wait for output that a loaded machine can meet (below), and keep what it computed:
each notebook it executes is written, with its outputs, to ``build/executed/<folder>/<name>.ipynb``
once every cell has passed. The course site (``make site``) and its test are built from these, so
``make test`` executes each chapter once, not once per product.

nbval drops the kernel's widget messages, so the widgets' last states (a progress bar's final text,
which the site shows) are recorded here from those messages and saved with the notebook, in the
standard ``metadata.widgets`` form that nbclient also writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.atomic import write_notebook_atomic

ROOT = Path(__file__).resolve().parent
EXECUTED = ROOT / "build" / "executed"

# nbval waits at most 5 s (hard-coded, IPyNbCell.output_timeout) for each output message after a
# cell has finished. On a loaded machine (a busy CI runner, a shared JupyterHub node) the kernel can
# be descheduled for longer than that while it still has messages to send, and the cell failed
# with "Timeout of 5 seconds exceeded waiting for output" although it had run correctly. A cell
# that truly hangs is still caught by --nbval-cell-timeout.
NBVAL_OUTPUT_TIMEOUT = 120  # seconds

_notebooks: dict[Path, dict] = {}  # notebook path -> {"nb": NotebookNode, "ok": bool, "count": int}
_widgets: dict[Path, dict[str, dict]] = {}  # notebook path -> {model id: the widget's last state}
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def _remember_widget(path: Path, msg: dict) -> None:
    """Fold a ``comm_open``/``comm_msg`` of a Jupyter widget into the widget's recorded state."""
    if msg.get("msg_type") not in ("comm_open", "comm_msg"):
        return
    content = msg.get("content", {})
    data = content.get("data", {})
    if msg["msg_type"] == "comm_open" and content.get("target_name") != "jupyter.widget":
        return
    if msg["msg_type"] == "comm_msg" and data.get("method") not in ("update", "echo_update"):
        return
    states = _widgets.setdefault(path, {})
    comm_id = content.get("comm_id")
    if msg["msg_type"] == "comm_msg" and comm_id not in states:
        return
    states.setdefault(comm_id, {}).update(data.get("state", {}))


def _record_widget_messages() -> None:
    try:
        from nbval.plugin import IPyNbFile
    except ImportError:  # nbval absent: no notebooks are run
        return
    if getattr(IPyNbFile.get_kernel_message, "_records_widgets", False):
        return
    original = IPyNbFile.get_kernel_message

    def get_kernel_message(self, *args, **kwargs):
        msg = original(self, *args, **kwargs)
        _remember_widget(Path(str(self.fspath)).resolve(), msg)
        return msg

    get_kernel_message._records_widgets = True
    IPyNbFile.get_kernel_message = get_kernel_message


_record_widget_messages()


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_nbval_cell(item):
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call" or not _is_nbval_cell(item):
        return
    path = Path(str(item.parent.fspath)).resolve()
    record = _notebooks.setdefault(path, {"nb": item.parent.nb, "ok": True, "count": 0})
    report = outcome.get_result()
    record["count"] += 1
    if record["count"] == 1:
        _target(path) and _target(path).unlink(missing_ok=True)  # no stale copy from an earlier run
    item.cell.execution_count = record["count"]
    item.cell.outputs = list(item.test_outputs or [])
    if report.failed:
        record["ok"] = False
    code_cells = sum(cell.cell_type == "code" for cell in record["nb"].cells)
    if record["count"] == code_cells:  # the notebook's last cell: write it now, for later tests
        _write(path, record)


def _target(path: Path) -> Path | None:
    try:
        return EXECUTED / path.relative_to(ROOT)
    except ValueError:
        return None  # a notebook outside the repository (e.g. a test's temporary copy)


def _write(path: Path, record: dict) -> None:
    target = _target(path)
    if target is None:
        return
    if not record["ok"]:
        target.unlink(missing_ok=True)  # never leave a stale success behind
        return
    states = _widgets.pop(path, {})
    if states:
        record["nb"].metadata["widgets"] = {WIDGET_STATE_MIME: {
            "version_major": 2, "version_minor": 0,
            "state": {model_id: {"model_name": state.get("_model_name"),
                                 "model_module": state.get("_model_module"),
                                 "model_module_version": state.get("_model_module_version"),
                                 "state": state}
                      for model_id, state in states.items()}}}
    write_notebook_atomic(target, record["nb"])
