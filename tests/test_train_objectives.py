"""The trainer's objective option (ch. 10): TrainConfig(objective="iwae", num_samples=K,
encoder_gradient="plain" | "dreg"), its training step against vaelib.objectives written out by hand,
saving and restoring it on resume, and the command line flags."""

import json
import math

import pytest
import torch

from vaelib.checkpoint import load_checkpoint
from vaelib.cli import main
from vaelib.objectives import iwae_surrogate
from vaelib.train import TrainConfig, _StepLog, _training_step, objective_settings, train
from vaelib.vae import VAE, VAEConfig

D = 16
CONFIG = VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2)
FAST = dict(epochs=4, batch_size=32, lr=1e-2, progress=False)
TINY = ["--dataset", "mnist-subset", "--max-images", "128", "--batch-size", "64", "--device", "cpu",
        "--no-progress", "--latent-dim", "4"]

pytestmark = pytest.mark.usefixtures("one_thread")


def prototypes(n=256, seed=0) -> torch.Tensor:
    """(n, D) grey-level images: 4 prototypes with pixels at 0.05 or 0.95."""
    g = torch.Generator().manual_seed(seed)
    centers = 0.05 + 0.9 * torch.rand(4, D, generator=g).round()
    return centers[torch.randint(0, 4, (n,), generator=g)]


def new_model(seed=0) -> VAE:
    torch.manual_seed(seed)
    return VAE(CONFIG)


def fixed_log_likelihood(model, x) -> float:
    """log p(x) by importance sampling (K = 200) on one fixed binarization of x."""
    xb = torch.bernoulli(x, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return model.iwae_bound(xb, 200, generator=torch.Generator().manual_seed(7)).mean().item()


def test_config_validates_the_objective():
    assert objective_settings(None) == {"objective": "elbo", "num_samples": 1,
                                        "encoder_gradient": "plain"}
    TrainConfig(objective="iwae", num_samples=5, encoder_gradient="dreg")
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="iwea")
    with pytest.raises(ValueError, match="unknown encoder_gradient"):
        TrainConfig(objective="iwae", encoder_gradient="stl")
    with pytest.raises(ValueError, match="objective='iwae'"):
        TrainConfig(encoder_gradient="dreg")  # DReG estimates the IWAE gradient
    with pytest.raises(ValueError, match="num_samples"):
        TrainConfig(objective="iwae", num_samples=0)


@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_the_step_is_adam_on_minus_the_iwae_surrogate(encoder_gradient):
    """One trainer step = one Adam step on -mean(iwae_surrogate) with the same random numbers."""
    x = torch.bernoulli(prototypes(32), generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(objective="iwae", num_samples=4, encoder_gradient=encoder_gradient, lr=1e-2)
    ours, theirs = new_model(), new_model()
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-2)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    log = _StepLog(1, torch.device("cpu"))
    _training_step(ours, opt_ours, x, cfg, False, torch.Generator().manual_seed(5), log)
    loss = -iwae_surrogate(theirs, x, theirs.posterior(x), 4, encoder_gradient,
                           generator=torch.Generator().manual_seed(5)).mean()
    opt_theirs.zero_grad()
    loss.backward()
    opt_theirs.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    logged_loss, reconstruction, kl = log.read()[0].tolist()
    assert logged_loss == pytest.approx(loss.item(), rel=1e-6)  # the loss column is -IWAE_K
    assert kl > 0 and reconstruction < 0  # the ELBO's two terms, for the history


def test_dreg_changes_only_the_encoder_update():
    x = torch.bernoulli(prototypes(32), generator=torch.Generator().manual_seed(1))
    after = {}
    for kind in ("plain", "dreg"):
        model = new_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        _training_step(model, opt, x, TrainConfig(objective="iwae", num_samples=4,
                                                  encoder_gradient=kind), False,
                       torch.Generator().manual_seed(5), _StepLog(1, torch.device("cpu")))
        after[kind] = dict(model.named_parameters())
    for name, p in after["plain"].items():
        same = torch.allclose(p, after["dreg"][name], rtol=1e-6, atol=1e-8)
        assert same == name.startswith("decoder"), name


@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_iwae_training_learns(encoder_gradient):
    x = prototypes(512)
    model = new_model()
    before = fixed_log_likelihood(model, x)
    history = train(model, x, objective="iwae", num_samples=5, encoder_gradient=encoder_gradient,
                    **{**FAST, "epochs": 6})
    assert fixed_log_likelihood(model, x) > before + 3
    assert all(math.isfinite(e) for e in history.train_elbo)


def test_objective_is_saved_and_a_resume_must_keep_it(tmp_path):
    x = prototypes(128)
    options = dict(objective="iwae", num_samples=3, encoder_gradient="dreg", **FAST)
    model = new_model()
    train(model, x, checkpoint_dir=tmp_path, **{**options, "epochs": 2})
    saved = load_checkpoint(tmp_path).train_config
    assert objective_settings(saved) == {"objective": "iwae", "num_samples": 3,
                                         "encoder_gradient": "dreg"}
    with pytest.raises(ValueError, match="resume it with the same objective"):
        train(model, x, checkpoint_dir=tmp_path, resume=True, **FAST)  # the default: the ELBO
    history = train(model, x, TrainConfig(**FAST, **objective_settings(saved)),
                    checkpoint_dir=tmp_path, resume=True)
    assert history.epoch == [1, 2, 3, 4]


def test_resume_continues_an_iwae_run_exactly(tmp_path):
    x = prototypes(128)
    options = dict(objective="iwae", num_samples=3, encoder_gradient="dreg", **FAST)
    straight = new_model()
    train(straight, x, **options)
    stopped = new_model()
    train(stopped, x, checkpoint_dir=tmp_path, **{**options, "epochs": 2})
    resumed = new_model(seed=99)  # other weights: they must come from the checkpoint
    train(resumed, x, checkpoint_dir=tmp_path, resume=True, **options)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_cli_objective_flags_are_saved_and_restored_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "1", "--objective", "iwae", "--k", "3",
                 "--encoder-gradient", "dreg"])
    assert objective_settings(load_checkpoint(out).train_config) == {
        "objective": "iwae", "num_samples": 3, "encoder_gradient": "dreg"}
    history = main(TINY + ["--out", str(out), "--epochs", "2", "--resume"])  # no objective flags
    assert history.epoch == [1, 2]
    assert objective_settings(load_checkpoint(out).train_config)["encoder_gradient"] == "dreg"
    with pytest.raises(SystemExit, match="--objective elbo differs from the run's saved") as err:
        main(TINY + ["--out", str(out), "--epochs", "3", "--resume", "--objective", "elbo",
                     "--encoder-gradient", "plain", "--k", "1"])
    # every flag that cannot change is named at once, not only the first one met
    for refused in ("--k 1 differs", "--encoder-gradient plain differs"):
        assert refused in str(err.value), err.value
    capsys.readouterr()


@pytest.mark.parametrize("flags, message", [
    (["--encoder-gradient", "dreg"], "objective='iwae'"),
    (["--objective", "iwae", "--k", "0"], "num_samples"),
])
def test_cli_bad_objective_flags_exit_with_a_message(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(TINY + ["--out", str(tmp_path / "x"), "--epochs", "1"] + flags)


def test_cli_help_lists_the_objective_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--objective", "--k", "--encoder-gradient"):
        assert flag in text


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_cuda_iwae_training(cuda_graph, encoder_gradient):
    x = prototypes(512).cuda()
    model = new_model().cuda()
    before = fixed_log_likelihood(model.cpu(), x.cpu())
    model.cuda()
    history = train(model, x, objective="iwae", num_samples=5, encoder_gradient=encoder_gradient,
                    cuda_graph=cuda_graph, **{**FAST, "epochs": 6})
    assert fixed_log_likelihood(model.cpu(), x.cpu()) > before + 3
    assert all(math.isfinite(e) for e in history.train_elbo)


def test_history_json_has_the_objective_in_the_checkpoint(tmp_path):
    train(new_model(), prototypes(64), checkpoint_dir=tmp_path, objective="iwae", num_samples=2,
          **{**FAST, "epochs": 1})
    manifest = json.loads((tmp_path / "config.json").read_text())
    assert manifest["train_config"]["objective"] == "iwae"
