"""What every test under tests/ shares: the ``gpu`` marker acts here, in one place.

Markers (declared in pyproject.toml): ``gpu`` tests need CUDA and are skipped where torch sees no
CUDA device; ``slow`` and ``notebooks`` tests are left out by ``make test-fast``.
"""

import pytest
import torch


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip("needs CUDA: torch sees no CUDA device on this machine (marked gpu)")


@pytest.fixture
def one_thread():
    """Small models gain nothing from threads, and lose a lot when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
