"""The training progress bar redraws a few times a second at most, not once per batch.

In Jupyter each redraw is a widget message; a bar that redraws per batch sends thousands of them,
which slows a loaded machine and outran nbval's wait for output (issue 11).
"""

import pytest
import torch
from tqdm import tqdm as text_tqdm

import vaelib.train
from vaelib.train import TrainConfig, train
from vaelib.vae import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_bar_redraws_at_most_twice_a_second(monkeypatch):
    made = []

    def recording_tqdm(*args, **kwargs):
        made.append(kwargs)
        return text_tqdm(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(vaelib.train, "tqdm", recording_tqdm)
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=8, hidden_dims=(8,), latent_dim=2))
    train(model, torch.rand(64, 8), TrainConfig(epochs=1, batch_size=8, progress=True))
    assert len(made) == 1
    assert made[0].get("mininterval", 0.1) >= 0.5  # tqdm's default, 0.1 s, is ten redraws a second
    assert made[0].get("disable") is False
