import pytest
import torch


@pytest.fixture
def one_thread():
    """Small models gain nothing from threads, and lose a lot when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
