"""vaelib.train on tiny synthetic data: learning, exact resume, errors, interrupts, CUDA."""

import json
import math
import warnings

import pytest
import torch

from vaelib.checkpoint import load_checkpoint
from vaelib.data import fixed_binarization
from vaelib.train import (CudaGraphWarning, History, NonFiniteLossError, TrainConfig,
                          TrainingDivergedError, _graph_or_eager, _StepLog, _training_step,
                          check_step_memory, step_memory_bytes, train, validation_data)
from vaelib.vae import VAE, VAEConfig

D = 16
CONFIG = VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2)
FAST = dict(epochs=4, batch_size=32, lr=1e-2, progress=False)


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
        return model.elbo_analytic_kl(xb, num_samples=20, generator=g).mean().item()


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


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_non_finite_loss_is_caught(cuda_graph):
    def poison(history, model):
        with torch.no_grad():
            model.decoder[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="epoch 2, iteration 1"):
        train(new_model().cuda(), prototypes(512).cuda(), callback=poison, cuda_graph=cuda_graph,
              **FAST)


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


# ------------------------------------------------------------------------------ trust the inputs

@pytest.mark.parametrize("options, message", [
    (dict(lr=float("inf")), r"lr must be a finite number > 0.*got inf"),
    (dict(lr=float("nan")), r"lr must be a finite number > 0"),
    (dict(lr="1e-3"), r"lr must be a finite number > 0.*got '1e-3'"),
    (dict(lr_final=float("inf")), r"lr_final must be a finite number > 0"),
    (dict(adam_eps=0.0), r"adam_eps must be a finite number > 0"),
    (dict(lr=True), r"lr must be a finite number"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
    (dict(seed=1.5), r"seed must be an integer >= 0"),
    (dict(binarize="yes"), r"binarize must be True, False or None"),
    (dict(progress="no"), r"progress must be True or False"),
])
def test_train_config_checks_types_and_ranges(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_no_data_points_is_a_clear_error():
    with pytest.raises(ValueError, match=r"train_x has no data points \(shape \(0, 16\)\)"):
        train(new_model(), prototypes()[:0], **FAST)
    with pytest.raises(ValueError, match=r"val_x has no data points"):
        train(new_model(), prototypes(), val_x=prototypes()[:0], **FAST)


def test_a_diverging_run_stops_before_saving_diverged_weights(tmp_path):
    # The case: lr = 100 on MNIST. The loss stays finite (ELBO about -1e17 after one
    # epoch), so the NaN check alone lets it through and saves the ruined weights.
    from vaelib.data import load_mnist_subset, to_unit_interval

    x = to_unit_interval(load_mnist_subset().train_images[:256])
    torch.manual_seed(0)
    model = VAE(VAEConfig.preset("pytorch-example"))
    with pytest.raises(TrainingDivergedError, match=r"diverging at epoch 1 \(lr=100\).*"
                       r"no checkpoint was saved.*smaller lr") as err:
        train(model, x, epochs=3, lr=100.0, batch_size=128, progress=False,
              checkpoint_dir=tmp_path / "run")
    assert type(err.value) is TrainingDivergedError and err.value.epoch == 1  # finite, diverged
    assert not (tmp_path / "run").exists()
    assert issubclass(NonFiniteLossError, TrainingDivergedError)  # one except for both


def test_a_healthy_run_with_a_rough_first_epoch_is_not_called_diverging():
    # A large learning rate that still works (0.1 on this small model) is no divergence.
    history = train(new_model(), prototypes(), **{**FAST, "lr": 0.1, "epochs": 6})
    assert len(history) == 6


# ------------------------------------------------------------------------- Ctrl-C keeps epochs

def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_saves_every_completed_epoch(tmp_path, capsys):
    # --checkpoint-every 5 and Ctrl-C in epoch 14: the disk held epoch 10, the summary said 13.
    options = {**FAST, "epochs": 20, "checkpoint_every": 5}
    model = new_model(cls=Flaky, fail_at=8 * 13 + 3, exc=KeyboardInterrupt())  # in epoch 14
    history = train(model, prototypes(), checkpoint_dir=tmp_path / "run", **options)
    assert history.interrupted and history.epoch == list(range(1, 14))
    out = capsys.readouterr().out
    assert "Interrupted during epoch 14" in out
    assert f"Saved the 13 completed epochs to {tmp_path / 'run'} (epoch 13)" in out
    saved = load_checkpoint(tmp_path / "run")
    assert saved.epoch == 13 and saved.history["epoch"] == list(range(1, 14))
    assert saved.history["interrupted"] is False  # a resumed run's history is not marked
    # The saved weights are those at the end of epoch 13 (not the half of epoch 14 in memory), so
    # resuming gives exactly the uninterrupted run.
    straight = new_model()
    train(straight, prototypes(), **{**options, "epochs": 13})
    assert same_weights(saved.model.state_dict(), straight.state_dict())
    train(saved.model, prototypes(), checkpoint_dir=tmp_path / "run", resume=saved,
          **{**options, "epochs": 15})
    train(new_model(), prototypes(), checkpoint_dir=tmp_path / "straight",
          **{**options, "epochs": 15})
    assert same_weights(load_checkpoint(tmp_path / "run").model.state_dict(),
                        load_checkpoint(tmp_path / "straight").model.state_dict())


def test_ctrl_c_between_epochs_saves_the_completed_one(tmp_path, capsys):
    def stop_after_seven(history, model):
        if len(history) == 7:
            raise KeyboardInterrupt

    options = {**FAST, "epochs": 20, "checkpoint_every": 5}
    model = new_model()
    history = train(model, prototypes(), checkpoint_dir=tmp_path, callback=stop_after_seven,
                    **options)
    assert history.epoch == list(range(1, 8))
    assert "Saved the 7 completed epochs" in capsys.readouterr().out
    saved = load_checkpoint(tmp_path)
    assert saved.epoch == 7 and same_weights(saved.model.state_dict(), model.state_dict())


def test_ctrl_c_in_the_first_epoch_saves_nothing_and_says_so(tmp_path, capsys):
    model = new_model(cls=Flaky, fail_at=3, exc=KeyboardInterrupt())
    history = train(model, prototypes(), checkpoint_dir=tmp_path / "run", **FAST)
    assert history.interrupted and len(history) == 0
    out = capsys.readouterr().out
    assert "No epoch was completed, so no checkpoint was saved" in out
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------- a captured step proves itself

def graph_check_setup(lr=1e-2):
    """A model, Adam and a step drawing from the default generator (as a CUDA graph's does)."""
    model = new_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log = _StepLog(4, torch.device("cpu"))
    cfg = TrainConfig(**FAST)

    def step(x):
        _training_step(model, optimizer, x, cfg, True, None, log)

    data = prototypes(64)
    return model, optimizer, log, step, data[:32], data[32:]


def warm_up(step, x, reset, warmup=3):
    """What a real capture does first: eager steps on x (the checker restores the state)."""
    for _ in range(warmup):
        reset()
        step(x)


def faithful_capture(step, x, reset):
    warm_up(step, x, reset)
    return step  # replaying it computes exactly the eager step


def failing_capture(step, x, reset):
    warm_up(step, x, reset, warmup=1)
    raise RuntimeError("CUDA error: operation not permitted when stream is capturing")


def stale_input_capture(step, x, reset):
    """A graph whose input buffer is never refilled: it keeps training on the capture's batch."""
    warm_up(step, x, reset)
    captured = x.clone()
    return lambda x_new: step(captured)


def two_steps_capture(step, x, reset):
    """A graph that replays the optimizer step twice (e.g. a stale step counter): update ≈ 2×."""
    warm_up(step, x, reset)

    def replay(x_new):
        step(x_new)
        step(x_new)
    return replay


def lost_update_capture(step, x, reset):
    """A graph whose parameter update is lost: the loss is right, the weights do not move."""
    warm_up(step, x, reset)

    def replay(x_new):
        params = [p.detach().clone() for p in step.model.parameters()]
        step(x_new)
        with torch.no_grad():
            for p, before in zip(step.model.parameters(), params):
                p.copy_(before)
    return replay


def state_of(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()})


def check(capture, **kwargs):
    model, optimizer, log, step, x, x_check = graph_check_setup(**kwargs)
    step.model = model
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    run, failed = _graph_or_eager(step, x, x_check, model, optimizer, log, capture=capture,
                                  reseed=torch.manual_seed)
    # Whatever the verdict, the check trained nothing: the weights are back, Adam is as new.
    assert same_weights(weights, model.state_dict())
    assert all(bool((v == 0).all()) for s in optimizer.state.values() for v in s.values())
    assert int(log.step) == 0
    return run, failed, step, (model, optimizer, log, x_check)


def test_a_faithful_capture_passes_the_check_and_the_check_trains_nothing():
    run, failed, step, (model, optimizer, log, x) = check(faithful_capture)
    assert failed is None and run is step
    # Training from here is training from the start: one step equals a fresh model's first step.
    torch.manual_seed(3)
    run(x)
    fresh = new_model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    torch.manual_seed(3)
    _training_step(fresh, fresh_opt, x, TrainConfig(**FAST), True, None,
                   _StepLog(4, torch.device("cpu")))
    assert same_weights(model.state_dict(), fresh.state_dict())


def test_a_capture_that_fails_means_the_eager_step():
    run, failed, step, _ = check(failing_capture)
    assert run is step
    assert "capturing the training step as a CUDA graph failed" in failed
    assert "operation not permitted when stream is capturing" in failed


@pytest.mark.parametrize("capture, what", [
    (stale_input_capture, "loss"),
    (two_steps_capture, "parameter update differs from the eager step's by"),
    (lost_update_capture, "parameter update differs from the eager step's by 1 of its size"),
])
def test_a_capture_that_computes_a_wrong_update_means_the_eager_step(capture, what):
    run, failed, step, _ = check(capture)
    assert run is step and what in failed and "same batch and state" in failed


def test_train_warns_once_and_trains_eagerly_when_the_graph_fails(monkeypatch):
    """The whole path on the CPU: train() as on CUDA with cuda_graph=True, the capture failing."""
    import vaelib.train as train_module

    monkeypatch.setattr(train_module, "_graphs_supported", lambda device: True)
    monkeypatch.setattr(train_module, "_capture_cuda_graph", failing_capture)
    x = prototypes()
    model = new_model()
    before = fixed_elbo(model, x)
    with pytest.warns(CudaGraphWarning) as caught:
        history = train(model, x, cuda_graph=True, **{**FAST, "epochs": 6})
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "capturing the training step as a CUDA graph failed" in message
    assert "eager CUDA step" in message and "--no-cuda-graph" in message
    assert fixed_elbo(model, x) > before + 3 and len(history) == 6

    monkeypatch.setattr(train_module, "_capture_cuda_graph", faithful_capture)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a graph that proves itself: no warning
        history = train(new_model(), x, cuda_graph=True, **FAST)
    assert len(history) == 4


@pytest.mark.gpu
def test_cuda_graph_passes_its_own_check():
    """On a GPU the real capture must agree with the eager step (no fallback warning)."""
    x = prototypes(512).cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CudaGraphWarning)
        history = train(new_model().cuda(), x, cuda_graph=True, **FAST)
    assert len(history) == 4


# ------------------------------------------------------------------------------ the weak edges

def test_a_step_too_large_for_memory_is_refused_up_front():
    # The case: the full model, K = 10^6 samples for each of 128 points. Refused before
    # anything is allocated, with the figure and the largest K that fits.
    config = VAEConfig.preset("pytorch-example")
    need = step_memory_bytes(config, 128, 10**6)
    assert need > 1e12  # about 2 TB
    with pytest.raises(ValueError, match=r"K = num_samples = 1,000,000 .* need about [0-9.,]+ GB "
                       r".*At most K = 481 fits"):
        check_step_memory(config, 128, 10**6, "cpu", budget=10**9)
    check_step_memory(config, 128, 50, "cpu", budget=10**9)  # K = 50 (Burda et al.) fits
    with pytest.raises(ValueError, match="Even K = 1 does not fit: use a smaller batch_size"):
        check_step_memory(config, 128, 1, "cpu", budget=10**6)
    x = torch.rand(256, 784)
    for options in (dict(objective="iwae", num_samples=10**6), dict(num_samples=10**5)):
        with pytest.raises(ValueError, match="would need about"):
            train(VAE(config), x, epochs=1, progress=False, **options)


def test_the_estimate_is_above_what_a_step_uses():
    """step_memory_bytes against the measured growth of a step's peak memory (torch's CPU
    allocator profile): the estimate must not be below it."""
    config = VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2)
    model = new_model(config=config)
    optimizer = torch.optim.Adam(model.parameters())
    x = prototypes(64)
    peaks = {}
    for k in (50, 250):
        cfg = TrainConfig(objective="iwae", num_samples=k, encoder_gradient="dreg")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as prof:
            _training_step(model, optimizer, x, cfg, True, None, _StepLog(1, torch.device("cpu")))
        peak, now = 0, 0
        for event in sorted(prof.events(), key=lambda e: e.time_range.start):
            now += event.cpu_memory_usage if not event.cpu_children else 0
            peak = max(peak, now)
        peaks[k] = peak
    per_k_measured = (peaks[250] - peaks[50]) / 200
    per_k_estimated = (step_memory_bytes(config, 64, 250) - step_memory_bytes(config, 64, 50)) / 200
    assert per_k_measured > 0
    assert per_k_estimated >= per_k_measured, (per_k_estimated, per_k_measured)


def test_checkpoint_dir_that_is_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is an existing file, not a folder"):
        train(new_model(), prototypes(), checkpoint_dir=path, **FAST)
    assert path.read_text() == "not a folder"


def test_divergence_in_epoch_1_with_checkpoint_dir_does_not_ask_for_one(tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        train(new_model(cls=Flaky, fail_at=1), prototypes(), checkpoint_dir=tmp_path / "run",
              **FAST)
    message = str(err.value)
    assert "no checkpoint was saved yet in" in message and str(tmp_path / "run") in message
    assert "pass checkpoint_dir=" not in message


def test_gaussian_likelihood_on_unscaled_pixels_is_refused():
    model = new_model(config=VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2,
                                       likelihood="gaussian"))
    pixels = (255 * prototypes()).round()  # whole numbers in [0, 255]: 8-bit pixels
    with pytest.raises(ValueError, match=r"look unscaled.*Divide by 255"):
        train(model, pixels, **FAST)
    history = train(model, pixels / 255, **{**FAST, "epochs": 1})  # scaled: trains
    assert math.isfinite(history.train_elbo[0])


def test_binarize_with_a_gaussian_likelihood_is_refused():
    model = new_model(config=VAEConfig(data_dim=D, hidden_dims=(32,), latent_dim=2,
                                       likelihood="gaussian"))
    with pytest.raises(ValueError, match=r"binarize=True .* Gaussian likelihood is for real "
                       "values"):
        train(model, prototypes(), binarize=True, **FAST)
