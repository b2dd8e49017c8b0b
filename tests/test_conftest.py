"""The root conftest.py gives nbval a wait for output that a loaded machine can meet (issue 11)."""

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nbval_cells_wait_longer_for_output(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(notebook, pytester.path / "tiny.ipynb")
    items, _ = pytester.inline_genitems("--nbval-lax", "tiny.ipynb")
    assert len(items) == 1 and type(items[0]).__name__ == "IPyNbCell"
    timeout = root_conftest().NBVAL_OUTPUT_TIMEOUT
    assert timeout >= 60  # nbval's own is 5 s
    assert items[0].output_timeout == timeout


def _gpu_outcomes(pytester, cuda: bool) -> dict:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text()
                          + f"\ntorch.cuda.is_available = lambda: {cuda}\n")
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.gpu
        def test_on_gpu():
            pass

        def test_anywhere():
            pass
    """)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "ignore").parseoutcomes()


def test_the_gpu_marker_skips_without_cuda_and_runs_with_it(pytester, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", torch.cuda.is_available)  # restored after
    assert _gpu_outcomes(pytester, cuda=False) == {"passed": 1, "skipped": 1}
    assert _gpu_outcomes(pytester, cuda=True) == {"passed": 2}
