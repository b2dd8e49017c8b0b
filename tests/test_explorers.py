"""vaelib.explorers, on a tiny untrained VAE: the controls set the numbers the
widgets show (the decoded image is the decoder's output for the slider values, a chosen image's
code is its posterior mean, an interpolation starts and ends at the endpoints' decodings), figures
and images are updated in place, and nothing leaks."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from vaelib.data import fixed_binarization, load_mnist_subset, to_unit_interval
from vaelib.latent import encode_dataset, lerp, most_active_dims, slerp
from vaelib.vae import VAE
from vaelib.explorers import Interpolation, LatentExplorer, LatentMap, PosteriorUncertainty

N = 60


@pytest.fixture(scope="module")
def data():
    mnist = load_mnist_subset()
    x = fixed_binarization(to_unit_interval(mnist.test_images[:N]))  # (N, 784) of 0/1
    return x, mnist.test_labels[:N]


def tiny_vae(latent_dim, seed=0):
    torch.manual_seed(seed)
    return VAE(hidden_dims=(16,), latent_dim=latent_dim)


def png_pixels(png: bytes, scale: int) -> np.ndarray:
    """The PNG's grey levels, one per image pixel (the widget upscales by ``scale``)."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return image[::scale, ::scale]


def expected_pixels(decoded: torch.Tensor) -> np.ndarray:
    return np.round(255 * (1 - decoded.clamp(0, 1).reshape(28, 28).numpy())).astype(np.uint8)


@pytest.fixture(autouse=True)
def no_figures_left(monkeypatch):
    """Every test ends with the pyplot figures it started with; static twins are not shown."""
    monkeypatch.setattr(plt, "show", lambda: None)
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


# ----------------------------------------------------------------------------------- LatentExplorer

def test_explorer_gives_sliders_to_the_most_active_units(data):
    x, labels = data
    model = tiny_vae(12)
    explorer = LatentExplorer(model, x, labels)
    mu, _ = encode_dataset(model, x)
    assert explorer.dims == most_active_dims(mu, 8).tolist()
    assert len(explorer.sliders) == 8
    assert [s.description for s in explorer.sliders] == [f"z[{j}]" for j in explorer.dims]
    # every posterior mean fits inside the sliders' range, so a code is never clipped
    assert explorer.bound >= float(mu[:, explorer.dims].abs().max()) + 0.5


def test_explorer_starts_from_the_chosen_images_posterior_mean(data):
    x, labels = data
    model = tiny_vae(12)
    explorer = LatentExplorer(model, x, labels, start=3)
    mu, _ = encode_dataset(model, x)
    assert explorer.chooser.value == 3
    torch.testing.assert_close(explorer.z, mu[3], rtol=0, atol=0)
    np.testing.assert_allclose([s.value for s in explorer.sliders], mu[3, explorer.dims].numpy(),
                               rtol=0, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(explorer.decoded, model.decode_mean(mu[3]))  # = reconstruction
    np.testing.assert_array_equal(png_pixels(bytes(explorer.image.value), explorer.scale),
                                  expected_pixels(explorer.decoded))
    assert "a " + str(int(labels[3])) in explorer.caption.value

    redraws = explorer.redraws
    explorer.chooser.value = 7  # choosing another image: one redraw, not one per slider
    assert explorer.redraws == redraws + 1
    torch.testing.assert_close(explorer.z, mu[7], rtol=0, atol=0)
    np.testing.assert_allclose([s.value for s in explorer.sliders], mu[7, explorer.dims].numpy(),
                               rtol=0, atol=1e-7)


def test_moving_a_slider_decodes_the_slider_values(data):
    x, labels = data
    model = tiny_vae(12)
    explorer = LatentExplorer(model, x, labels)
    before_z, before_png = explorer.z.clone(), bytes(explorer.image.value)
    j = explorer.dims[0]
    explorer.sliders[0].value = 1.25
    assert float(explorer.z[j]) == 1.25
    others = [k for k in range(12) if k != j]
    torch.testing.assert_close(explorer.z[others], before_z[others], rtol=0, atol=0)
    with torch.no_grad():
        want = model.decode_mean(explorer.z)
    torch.testing.assert_close(explorer.decoded, want)
    assert bytes(explorer.image.value) != before_png
    np.testing.assert_array_equal(png_pixels(bytes(explorer.image.value), explorer.scale),
                                  expected_pixels(want))
    assert f"{float(explorer.z.norm()):.2f}" in explorer.readout.value
    assert f"{float(model.log_prior(explorer.z)):.2f}" in explorer.readout.value


def test_eight_arrow_key_steps_fit_in_the_first_sliders_range(data):
    """The browser test presses ArrowRight 8 times on the first slider: it must move."""
    x, labels = data
    explorer = LatentExplorer(tiny_vae(12), x, labels)
    first = explorer.sliders[0]
    assert first.value + 8 * first.step <= first.max


def test_reset_and_set_latent(data):
    x, labels = data
    model = tiny_vae(12)
    explorer = LatentExplorer(model, x, labels)
    explorer.reset()
    assert torch.equal(explorer.z, torch.zeros(12)) and explorer.chosen is None
    z = torch.linspace(-1, 1, 12)
    explorer.set_latent(z)
    torch.testing.assert_close(explorer.z, z)
    with torch.no_grad():
        torch.testing.assert_close(explorer.decoded, model.decode_mean(z))


def test_explorer_without_images_for_a_small_latent_space():
    model = tiny_vae(2)
    explorer = LatentExplorer(model)
    assert explorer.dims == [0, 1] and explorer.chooser is None
    assert torch.equal(explorer.z, torch.zeros(2))
    explorer.sliders[1].value = -2.0
    torch.testing.assert_close(explorer.z, torch.tensor([0.0, -2.0]))
    with pytest.raises(ValueError, match="no images"):
        explorer.choose(0)


def test_many_moves_leak_no_figures_and_redraw_once_each(data):
    x, labels = data
    explorer = LatentExplorer(tiny_vae(12), x, labels)
    redraws = explorer.redraws
    for value in np.linspace(-2, 2, 50):
        explorer.sliders[1].value = float(value)
    assert explorer.redraws == redraws + 50  # the no_figures_left fixture checks pyplot


def test_explorer_static_twin_is_a_traversal(data):
    x, labels = data
    explorer = LatentExplorer(tiny_vae(12), x, labels)
    shown = []
    plt.show = lambda: shown.append(plt.gcf())  # restored by the fixture's monkeypatch
    explorer.show_static()
    assert len(shown) == 1
    (ax,) = shown[0].axes
    assert len(ax.get_yticklabels()) == 8 and len(ax.get_xticklabels()) == 7
    z = explorer.z.clone()
    assert torch.equal(explorer.z, z)  # drawing the twin does not move the widget


def test_explorer_bad_input_is_a_clear_error(data):
    x, labels = data
    with pytest.raises(ValueError, match="max_sliders"):
        LatentExplorer(tiny_vae(12))  # which 8 of 12? needs x to rank them
    with pytest.raises(ValueError, match="dims"):
        LatentExplorer(tiny_vae(12), x, dims=[0, 0])
    with pytest.raises(ValueError, match="start"):
        LatentExplorer(tiny_vae(12), x, start=N)
    with pytest.raises(ValueError, match="one entry per image"):
        LatentExplorer(tiny_vae(12), x, labels[:5])
    with pytest.raises(TypeError, match="vaelib.vae.VAE"):
        LatentExplorer(torch.nn.Linear(2, 784))
    with pytest.raises(ValueError, match="shape"):
        LatentExplorer(tiny_vae(2), x[:, :100])


# ----------------------------------------------------------------------------------- LatentMap

def test_latent_map_decodes_the_picked_point_and_the_inverse_cdf_grid(data):
    x, labels = data
    model = tiny_vae(2)
    latent_map = LatentMap(model, x, labels, grid_size=7)
    assert latent_map.grid.shape == (7, 7, 2) and latent_map.manifold.shape == (7, 7, 784)
    from scipy import stats
    axis = stats.norm.ppf((np.arange(7) + 0.5) / 7)
    np.testing.assert_allclose(latent_map.grid[3, :, 0].numpy(), axis, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(latent_map.manifold, model.decode_mean(latent_map.grid))
    before = bytes(latent_map.image.value)
    latent_map.controls["z1"].value = 1.5
    latent_map.controls["z2"].value = -0.5
    torch.testing.assert_close(latent_map.z, torch.tensor([1.5, -0.5]))
    with torch.no_grad():
        torch.testing.assert_close(latent_map.decoded, model.decode_mean(torch.tensor([1.5, -0.5])))
    assert bytes(latent_map.image.value) != before
    assert "+1.50" in latent_map.readout.value and "-0.50" in latent_map.readout.value
    # the marker sits at the picked point on the scatter
    ax_map = latent_map.figure.axes[0]
    star = [line for line in ax_map.get_lines() if line.get_marker() == "*"]
    assert len(star) == 1 and star[0].get_xdata()[0] == 1.5 and star[0].get_ydata()[0] == -0.5


def test_latent_map_redraws_in_place(data):
    x, labels = data
    latent_map = LatentMap(tiny_vae(2), x, labels, grid_size=5)
    figure, redraws = latent_map.figure, latent_map.redraws
    for value in np.linspace(-2, 2, 6):
        latent_map.controls["z1"].value = float(value)
    assert latent_map.figure is figure and latent_map.redraws == redraws + 6
    assert len(figure.axes) == 3  # cleared before each redraw, not stacked


def test_latent_map_needs_two_dims(data):
    x, labels = data
    with pytest.raises(ValueError, match="latent_dim=5.*dims=\\(i, j\\)"):
        LatentMap(tiny_vae(5), x, labels)
    model = tiny_vae(5)
    latent_map = LatentMap(model, x, labels, dims=(3, 1), grid_size=4)
    latent_map.controls["z1"].value = 0.7  # unit 3
    latent_map.controls["z2"].value = -1.1  # unit 1
    torch.testing.assert_close(latent_map.z, torch.tensor([0.0, -1.1, 0.0, 0.7, 0.0]))
    assert torch.equal(latent_map.grid[..., [0, 2, 4]], torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match="two different units"):
        LatentMap(model, x, labels, dims=(1, 1))
    with pytest.raises(ValueError, match="grid_size"):
        LatentMap(tiny_vae(2), x, labels, grid_size=1)


def test_latent_map_static_twin_leaves_the_widget_alone(data):
    x, labels = data
    latent_map = LatentMap(tiny_vae(2), x, labels, grid_size=5)
    z = latent_map.z.clone()
    latent_map.show_static(z1=2.0)
    assert torch.equal(latent_map.z, z)
    with pytest.raises(ValueError, match="unknown control"):
        latent_map.show_static(zz=1.0)


# ----------------------------------------------------------------------------------- Interpolation

def test_interpolation_endpoints_are_the_endpoints_decodings(data):
    x, labels = data
    model = tiny_vae(6)
    interp = Interpolation(model, x, labels, start=2, end=9, steps=7)
    mu, _ = encode_dataset(model, x)
    assert set(interp.paths) == {"linear", "spherical"}
    with torch.no_grad():
        for method, path in interp.paths.items():
            assert path.shape == (7, 6)
            torch.testing.assert_close(interp.decoded[method][0], model.decode_mean(mu[2]))
            torch.testing.assert_close(interp.decoded[method][-1], model.decode_mean(mu[9]))
            torch.testing.assert_close(interp.decoded[method], model.decode_mean(path))
    torch.testing.assert_close(interp.paths["linear"], lerp(mu[2], mu[9], interp.t))
    torch.testing.assert_close(interp.paths["spherical"], slerp(mu[2], mu[9], interp.t))


def test_interpolation_controls_change_the_path(data):
    x, labels = data
    model = tiny_vae(6)
    interp = Interpolation(model, x, labels, start=0, end=1, steps=5, method="linear")
    assert set(interp.paths) == {"linear"}
    before = bytes(interp.image.value)
    interp.controls["steps"].value = 11
    assert interp.paths["linear"].shape == (11, 6) and bytes(interp.image.value) != before
    interp.controls["method"].value = "spherical"
    assert set(interp.paths) == {"spherical"}
    interp.controls["end"].value = 4
    mu, _ = encode_dataset(model, x)
    torch.testing.assert_close(interp.paths["spherical"][-1], mu[4])


def test_the_spherical_midpoint_is_the_linear_one_pushed_out_by_cos_half_the_angle(data):
    """At t = ½ both weights of slerp are 1 / (2 cos(Ω/2)): slerp's midpoint is lerp's divided by
    cos(Ω/2), longer whatever the endpoints' norms: the straight line cuts inside."""
    x, labels = data
    model = tiny_vae(6)
    interp = Interpolation(model, x, labels, start=5, end=5, steps=3)  # a degenerate path
    torch.testing.assert_close(interp.paths["spherical"], interp.paths["linear"])
    interp.controls["end"].value = 11
    z0, z1 = interp.paths["linear"][0], interp.paths["linear"][-1]
    cos_omega = (z0 @ z1) / (z0.norm() * z1.norm())
    half = torch.sqrt((1 + cos_omega) / 2)  # cos(Ω/2)
    linear_mid, spherical_mid = interp.paths["linear"][1], interp.paths["spherical"][1]
    torch.testing.assert_close(spherical_mid, linear_mid / half)
    assert float(linear_mid.norm()) < float(spherical_mid.norm())
    assert f"linear: {float(linear_mid.norm()):.2f}" in interp.readout.value


def test_interpolation_bad_input(data):
    x, labels = data
    with pytest.raises(ValueError, match="method"):
        Interpolation(tiny_vae(2), x, labels, method="cubic")
    with pytest.raises(ValueError, match="steps"):
        Interpolation(tiny_vae(2), x, labels, steps=1)
    with pytest.raises(ValueError, match="end"):
        Interpolation(tiny_vae(2), x, labels, end=-1)


# ------------------------------------------------------------------------ PosteriorUncertainty

def test_posterior_uncertainty_draws_from_the_chosen_posterior(data):
    x, labels = data
    model = tiny_vae(2)
    pu = PosteriorUncertainty(model, x, labels, num_samples=5)
    first_of_each = [int((labels == k).nonzero()[0]) for k in torch.unique(labels)]
    assert pu.indices == first_of_each
    index = pu.indices[2]
    pu.controls["image"].value = index
    q = model.posterior(x[index:index + 1])
    torch.testing.assert_close(pu.posterior.mean, q.mean.detach())
    torch.testing.assert_close(pu.posterior.logvar, q.logvar.detach())
    want = q.sample(5, generator=torch.Generator().manual_seed(0))[:, 0]
    torch.testing.assert_close(pu.samples, want)
    with torch.no_grad():
        torch.testing.assert_close(pu.decoded_samples, model.decode_mean(want))
        torch.testing.assert_close(pu.reconstruction, model.decode_mean(q.mean[0]))
    # ellipses: 1σ and 2σ for each offered image, on the map
    from matplotlib.patches import Ellipse
    ellipses = [p for p in pu.figure.axes[0].patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 2 * len(pu.indices)
    std = q.stddev[0].detach()
    mine = [e for e in ellipses if np.allclose(e.center, q.mean[0].detach().numpy())]
    assert sorted(round(e.width / float(std[0]), 4) for e in mine) == [2.0, 4.0]
    assert sorted(round(e.height / float(std[1]), 4) for e in mine) == [2.0, 4.0]


def test_posterior_uncertainty_controls(data):
    x, labels = data
    pu = PosteriorUncertainty(tiny_vae(2), x, labels, num_samples=3)
    before = pu.samples.clone()
    pu.controls["seed"].value = 4
    assert not torch.equal(pu.samples, before)
    pu.controls["num_samples"].value = 12
    assert pu.samples.shape == (12, 2) and pu.decoded_samples.shape == (12, 784)


def test_posterior_uncertainty_in_two_of_many_units(data):
    x, labels = data
    with pytest.raises(ValueError, match="dims=\\(i, j\\)"):
        PosteriorUncertainty(tiny_vae(4), x, labels)
    pu = PosteriorUncertainty(tiny_vae(4), x, labels, dims=(0, 3), indices=[1, 2])
    assert pu.samples.shape == (8, 4) and pu.indices == [1, 2]
    with pytest.raises(ValueError, match="indices"):
        PosteriorUncertainty(tiny_vae(2), x, labels, indices=[N])
    with pytest.raises(ValueError, match="num_samples"):
        PosteriorUncertainty(tiny_vae(2), x, labels, num_samples=0)


def test_the_latent_explorers_images_carry_descriptions(data):
    x, labels = data
    explorer = LatentExplorer(tiny_vae(4), x, labels)
    assert explorer.image_alt.alt.startswith("Decoded image")
    assert explorer.thumbnail_alt.alt.startswith("Test image")
    assert explorer.image_alt in explorer.children[1].children[0].children[0].children
    # Not as a tooltip: with ipywidgets 8.1 a tooltip on an Image stops JupyterLab drawing it.
    assert explorer.image.tooltip is None and explorer.thumbnail.tooltip is None


# ----------------------------------------------------------------------------------- the base

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("explorer", [LatentExplorer, LatentMap, Interpolation,
                                      PosteriorUncertainty])
def test_every_explorer_refuses_a_model_whose_weights_are_not_finite(data, explorer, bad):
    """A diverged model decodes only NaN: the explorer says so instead of drawing garbage."""
    x, labels = data
    model = tiny_vae(2)
    with torch.no_grad():
        next(iter(model.decoder.parameters()))[0, 0] = bad  # one weight of the decoder
    names = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    with pytest.raises(ValueError, match="NaN or infinite") as error:
        explorer(model, x, labels)
    assert f"{names[0]} (1 of " in str(error.value) and "earlier checkpoint" in str(error.value)


def test_the_explorers_are_one_module_each_with_the_public_names_unchanged():
    import vaelib.explorers as explorers
    from vaelib.explorers.base import LatentView
    assert explorers.LatentView is LatentView
    for cls in (LatentExplorer, LatentMap, Interpolation, PosteriorUncertainty):
        assert issubclass(cls, LatentView) and cls.__name__ in explorers.__all__
        assert cls.__module__ != "vaelib.explorers.base"
    assert len({cls.__module__ for cls in (LatentExplorer, LatentMap, Interpolation,
                                           PosteriorUncertainty)}) == 4
