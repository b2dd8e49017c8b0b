"""vaelib.train on tiny synthetic data: learning, exact resume, errors, interrupts, CUDA."""

import json
import math

import pytest
import torch

from vaelib.checkpoint import load_checkpoint
from vaelib.data import fixed_binarization
from vaelib.train import History, NonFiniteLossError, TrainConfig, train, validation_data
from vaelib.vae import VAE, VAEConfig

D = 16
CONFIG = VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2)
FAST = dict(epochs=4, batch_size=32, lr=1e-2, progress=False)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


pytestmark = pytest.mark.usefixtures("one_thread")


def prototypes(n=256, seed=0) -> torch.Tensor:
    """(n, D) grey-level images: 4 prototypes with pixels at 0.05 or 0.95."""
    g = torch.Generator().manual_seed(seed)
    centers = 0.05 + 0.9 * torch.rand(4, D, generator=g).round()
    return centers[torch.randint(0, 4, (n,), generator=g)]


def new_model(seed=0, config=CONFIG, cls=VAE, **kwargs) -> VAE:
    torch.manual_seed(seed)
    return cls(config, **kwargs)


def fixed_elbo(model, x) -> float:
    g = torch.Generator().manual_seed(123)
    xb = torch.bernoulli(x, generator=g)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        return model.elbo(xb, num_samples=20, generator=g).mean().item()


class Flaky(VAE):
    """A VAE whose loss turns NaN (or which raises) from its ``fail_at``-th training step on."""

    def __init__(self, config, fail_at, exc=None):
        super().__init__(config)
        self.calls, self.fail_at, self.exc = 0, fail_at, exc

    def elbo_terms(self, x, *args, **kwargs):
        self.calls += 1
        reconstruction, kl = super().elbo_terms(x, *args, **kwargs)
        if self.calls >= self.fail_at:
            if self.exc is not None:
                raise self.exc
            reconstruction = reconstruction * float("nan")
        return reconstruction, kl


# ---------------------------------------------------------------------------------------- learning

def test_training_increases_the_elbo():
    x = prototypes()
    model = new_model()
    before = fixed_elbo(model, x)
    history = train(model, x, **{**FAST, "epochs": 6})
    after = fixed_elbo(model, x)
    # Measured: about -11.1 -> -6.4 nats; the 4 prototypes need 2 bits of code, the noise ~3.2 nats.
    assert after > before + 3, (before, after)
    assert history.train_elbo[-1] > history.train_elbo[0] + 2
    assert history.epoch == [1, 2, 3, 4, 5, 6] and not history.interrupted
    for name in ("train_elbo", "train_reconstruction", "train_kl", "seconds"):
        assert len(getattr(history, name)) == 6
    for elbo, rec, kl in zip(history.train_elbo, history.train_reconstruction, history.train_kl):
        assert math.isclose(elbo, rec - kl, abs_tol=1e-6) and kl >= 0


def test_validation_and_history_json():
    x = prototypes()
    history = train(new_model(), x, val_x=prototypes(64, seed=1), val_every=2, **FAST)
    assert history.val_epoch == [2, 4] and len(history.val_elbo) == 2
    assert all(math.isclose(e, r - k, abs_tol=1e-6) for e, r, k in
               zip(history.val_elbo, history.val_reconstruction, history.val_kl))
    assert History.from_dict(json.loads(json.dumps(history.to_dict()))) == history


def test_resume_continues_exactly(tmp_path):
    x = prototypes()
    straight = new_model(seed=0)
    h_straight = train(straight, x, checkpoint_dir=tmp_path / "a", **FAST)
    first = new_model(seed=0)
    train(first, x, checkpoint_dir=tmp_path / "b", **{**FAST, "epochs": 2})
    resumed = new_model(seed=99)  # other initial weights: all state must come from the checkpoint
    h_resumed = train(resumed, x, checkpoint_dir=tmp_path / "b", resume=True, **FAST)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert h_resumed.train_elbo == h_straight.train_elbo and h_resumed.epoch == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "b").epoch == 4


def test_resume_from_a_loaded_checkpoint_uses_it_as_it_is(tmp_path):
    x = prototypes()
    straight = new_model(seed=0)
    h_straight = train(straight, x, **FAST)
    train(new_model(seed=0), x, checkpoint_dir=tmp_path, **{**FAST, "epochs": 2})
    ckpt = load_checkpoint(tmp_path)
    h_resumed = train(ckpt.model, x, checkpoint_dir=tmp_path, resume=ckpt, **FAST)
    assert h_resumed.train_elbo == h_straight.train_elbo and h_resumed.epoch == [1, 2, 3, 4]


def test_validation_data_is_what_train_scores():
    x = prototypes(64, seed=1)
    model = new_model()
    got = validation_data(model, x, seed=3)
    assert torch.equal(got, fixed_binarization(x, seed=3))  # Bernoulli: binarized once, seed 3
    assert torch.equal(validation_data(model, x, binarize=False), x)
    assert not TrainConfig().binarizes(VAE(CONFIG, likelihood="gaussian"))


def test_learning_rate_schedule(tmp_path):
    cfg = TrainConfig(epochs=5, lr=1e-2, lr_final=1e-4)
    expected = [1e-2, 10**-2.5, 1e-3, 10**-3.5, 1e-4]  # geometric: equal ratios
    assert [cfg.lr_at(e) for e in range(1, 6)] == pytest.approx(expected, rel=1e-12)
    assert TrainConfig(epochs=5).lr_at(3) == 1e-3

    def saved_lr(directory):
        return load_checkpoint(directory).optimizer_state["param_groups"][0]["lr"]

    train(new_model(), prototypes(), checkpoint_dir=tmp_path, **{**FAST, "lr_final": 1e-3})
    assert saved_lr(tmp_path) == pytest.approx(1e-3)  # the last epoch's lr (FAST: lr = 1e-2)
    with pytest.raises(ValueError, match="lr_final"):
        TrainConfig(lr_final=0.0)


def test_burda_output_bias_is_set_from_the_training_mean():
    x = prototypes()
    config = VAEConfig(data_dim=D, hidden_dims=(8, 8), latent_dim=2, activation="tanh",
                       init_output_bias=True)
    model = new_model(config=config)
    train(model, x, **{**FAST, "epochs": 0})
    torch.testing.assert_close(torch.sigmoid(model.decoder[-1].bias), x.mean(0))
    train(model, x, **{**FAST, "epochs": 1})
    bias = model.decoder[-1].bias.clone()
    train(model, x, **{**FAST, "epochs": 0})  # training more does not reset the bias
    assert torch.equal(model.decoder[-1].bias, bias)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(new_model(), 255 * prototypes(), **FAST)
    with pytest.raises(ValueError, match="shape"):
        train(new_model(), torch.rand(8, D + 1), **FAST)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(new_model(), prototypes(), resume=True, **FAST)
    with pytest.raises(FileNotFoundError):
        train(new_model(), prototypes(), resume=True, checkpoint_dir=tmp_path / "none", **FAST)
    with pytest.raises(TypeError):
        train(new_model(), prototypes(), epochz=3)


# ------------------------------------------------------------------------------------ reliability

def test_non_finite_loss_names_the_step_and_the_last_checkpoint(tmp_path):
    model = new_model(cls=Flaky, fail_at=8 + 3)  # 8 steps per epoch: the 3rd step of epoch 2
    match = r"epoch 2, iteration 3 of 8.*run \(epoch 1\)"
    with pytest.raises(NonFiniteLossError, match=match) as err:
        train(model, prototypes(), checkpoint_dir=tmp_path / "run", **FAST)
    assert (err.value.epoch, err.value.iteration) == (2, 3)
    assert err.value.checkpoint == tmp_path / "run"
    assert load_checkpoint(tmp_path / "run").epoch == 1  # the good checkpoint is intact
    with pytest.raises(NonFiniteLossError, match="iteration 1 of 8.*no checkpoint was saved"):
        train(new_model(cls=Flaky, fail_at=1), prototypes(), **FAST)


def test_non_finite_weights_are_caught_at_the_next_epoch():
    def poison(history, model):
        with torch.no_grad():
            model.decoder[0].weight.fill_(float("inf"))

    with pytest.raises(NonFiniteLossError, match="epoch 2, iteration 1"):
        train(new_model(), prototypes(), callback=poison, **FAST)


def test_keyboard_interrupt_returns_model_and_history(capsys):
    def stop_after_two(history, model):
        if len(history) == 2:
            raise KeyboardInterrupt

    model = new_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    history = train(model, prototypes(), callback=stop_after_two, **FAST)
    assert history.interrupted and history.epoch == [1, 2]
    assert not torch.equal(initial["decoder.0.weight"], model.state_dict()["decoder.0.weight"])
    assert "Interrupted after epoch 2" in capsys.readouterr().out


def test_keyboard_interrupt_in_the_middle_of_an_epoch(capsys, tmp_path):
    model = new_model(cls=Flaky, fail_at=8 * 2 + 5, exc=KeyboardInterrupt())  # in epoch 3
    history = train(model, prototypes(), checkpoint_dir=tmp_path, **FAST)
    assert history.interrupted and history.epoch == [1, 2]
    out = capsys.readouterr().out
    assert "Interrupted during epoch 3" in out and "(epoch 2)" in out
    assert load_checkpoint(tmp_path).epoch == 2


# ---------------------------------------------------------------------------------------- CUDA

@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(cuda_graph=False), dict(cuda_graph=True),
                                     dict(cuda_graph=True, bf16=True)])
def test_cuda_training(options):
    x = prototypes(512).cuda()
    model = new_model().cuda()
    before = fixed_elbo(model, x.cpu())
    precision = torch.get_float32_matmul_precision()
    history = train(model, x, **{**FAST, "epochs": 6}, **options)
    assert torch.get_float32_matmul_precision() == precision  # TF32 setting restored
    assert fixed_elbo(model.cpu(), x.cpu()) > before + 3
    assert all(math.isfinite(e) for e in history.train_elbo)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_non_finite_loss_is_caught(cuda_graph):
    def poison(history, model):
        with torch.no_grad():
            model.decoder[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="epoch 2, iteration 1"):
        train(new_model().cuda(), prototypes(512).cuda(), callback=poison, cuda_graph=cuda_graph,
              **FAST)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_resume_continues(tmp_path, cuda_graph):
    x = prototypes(512).cuda()
    options = {**FAST, "cuda_graph": cuda_graph}
    straight = new_model().cuda()
    h_straight = train(straight, x, checkpoint_dir=tmp_path / "a", **options)
    first = new_model().cuda()
    train(first, x, checkpoint_dir=tmp_path / "b", **{**options, "epochs": 2})
    resumed = new_model(seed=9).cuda()
    h_resumed = train(resumed, x, checkpoint_dir=tmp_path / "b", resume=True, **options)
    assert h_resumed.epoch == [1, 2, 3, 4]
    if cuda_graph:  # warm-up steps run eagerly after a resume: same model, maybe other random draws
        assert abs(h_resumed.train_elbo[-1] - h_straight.train_elbo[-1]) < 1.0
    else:  # a device generator reseeded every epoch: the same computation
        a, b = straight.state_dict(), resumed.state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
