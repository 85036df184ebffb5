"""The whole model zoo: shapes, gradients, save/load, denoising; ResNet and conv specifics;
the linear autoencoder against PCA and the conv autoencoder with and without skips."""

import pytest
import torch
from torch import nn

import aelab
from aelab import ConvAutoencoder, ResNetAutoencoder, conv_output_size

# name -> (constructor, one input sample's shape); every model family in aelab
ZOO = {
    "mlp": (lambda: aelab.Autoencoder(6, 2, hidden_size=8, layers=2), (6,)),
    "linear": (lambda: aelab.LinearAutoencoder(6, 2), (6,)),
    "resnet": (lambda: ResNetAutoencoder(6, 2, hidden_size=12, blocks=2), (6,)),
    "conv-flat": (lambda: ConvAutoencoder((1, 8, 8), 3), (64,)),
    "conv-image": (lambda: ConvAutoencoder((1, 8, 8), 3), (1, 8, 8)),
    "conv-skip": (lambda: ConvAutoencoder((1, 8, 8), 3, skip=True), (64,)),
    "conv-rgb-odd": (
        lambda: ConvAutoencoder((3, 7, 5), 4, skip=True, channels=(4, 6, 8)),
        (3, 7, 5),
    ),
    "vae": (lambda: aelab.VAE(6, 2, hidden_size=8, layers=2), (6,)),
}


def _build(name):
    factory, sample_shape = ZOO[name]
    with aelab.seeded(0):
        return factory(), sample_shape


@pytest.mark.parametrize("name", ZOO)
def test_shapes_round_trip(name):
    model, sample_shape = _build(name)
    x = torch.rand(5, *sample_shape)
    z = model.encode(x)
    assert z.shape == (5, model.bottleneck_size)
    assert model(x).shape == x.shape
    assert model.decode(z).shape == (5, model.input_size)  # decode gives flat rows


@pytest.mark.parametrize("name", ZOO)
def test_gradients_reach_every_parameter(name):
    model, sample_shape = _build(name)
    model.train()  # a VAE samples z in train mode, so its log-variance head gets gradients too
    x = torch.randn(16, *sample_shape)
    model(x).pow(2).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing


@pytest.mark.parametrize("name", ZOO)
def test_save_load_round_trip(name, tmp_path):
    model, sample_shape = _build(name)
    loaded = aelab.load(aelab.save(model, tmp_path / "m.pt"))
    assert type(loaded) is type(model) and loaded.init_args == model.init_args
    x = torch.rand(3, *sample_shape)
    model.eval()
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", ["mlp", "linear", "resnet", "conv-flat", "conv-skip"])
def test_denoising_works_with_every_model(name):
    model, _ = _build(name)
    X = torch.rand(64, model.input_size)
    ds = aelab.data.Dataset(X)
    clean = aelab.train_autoencoder(_build(name)[0], ds, epochs=3, batch_size=16, progress=False)
    noisy = aelab.train_autoencoder(
        model, ds, epochs=3, batch_size=16, noise_sigma=0.3, test=ds, progress=False
    )
    assert noisy.config["noise_sigma"] == 0.3 and len(noisy.test_loss) == 3
    # same seed and model, so the only difference is the corrupted inputs
    assert noisy.step_loss[0] != clean.step_loss[0]
    assert all(torch.isfinite(torch.tensor(noisy.step_loss)))


def test_denoising_vae():
    model = aelab.VAE(6, 2, hidden_size=8, layers=1)
    ds = aelab.data.Dataset(torch.rand(64, 6))
    history = aelab.train_vae(model, ds, epochs=3, batch_size=16, noise_sigma=0.2, progress=False)
    assert history.config["noise_sigma"] == 0.2 and len(history.train_loss) == 3


# --- ResNet ----------------------------------------------------------------------


def test_resnet_blocks_are_residual():
    model = ResNetAutoencoder(3, 1, hidden_size=10, blocks=2)
    block = model.encoder[0]
    x = torch.randn(4, 3)
    assert torch.allclose(block(x), x + block.f(x))
    hidden = [m for m in block.f if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(3, 10), (10, 3)]
    assert isinstance(model.encoder[-1], nn.Linear) and model.encoder[-1].out_features == 1
    assert isinstance(model.decoder[0], nn.Linear) and model.decoder[0].in_features == 1
    assert len(model.encoder) == len(model.decoder) == 3


def test_resnet_without_blocks_is_linear():
    model = ResNetAutoencoder(4, 2, hidden_size=8, blocks=0)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in aelab.LinearAutoencoder(4, 2).parameters()
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(blocks=-1), ValueError, "blocks must be an int >= 0, got -1"),
        (dict(hidden_size=0), ValueError, "hidden_size must be an int >= 1, got 0"),
        (dict(blocks=1.5), TypeError, "blocks must be an int"),
    ],
)
def test_resnet_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResNetAutoencoder(4, 2, **kwargs)


# --- conv ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, k, s, p, d",
    [
        (28, 3, 1, 1, 1),
        (28, 3, 2, 1, 1),
        (8, 3, 2, 1, 1),
        (7, 3, 2, 1, 1),
        (28, 5, 1, 0, 1),
        (13, 4, 3, 2, 1),
        (16, 3, 1, 2, 2),
        (9, 2, 2, 0, 1),
        (5, 5, 1, 0, 1),
        (1, 3, 2, 1, 1),
    ],
)
def test_conv_output_size_matches_torch(n, k, s, p, d):
    x = torch.zeros(1, 1, n, n + 1)
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    assert conv(x).shape[2:] == (
        conv_output_size(n, k, s, p, d),
        conv_output_size(n + 1, k, s, p, d),
    )
    if 2 * p <= k:  # torch's limit on max-pooling padding
        pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d)
        assert pool(x).shape[2] == conv_output_size(n, k, s, p, d)


def test_conv_output_size_errors():
    with pytest.raises(ValueError, match="shorter than the kernel's span"):
        conv_output_size(3, kernel_size=5)
    with pytest.raises(ValueError, match="stride must be an int >= 1, got 0"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        conv_output_size(8, 3, padding=-1)


@pytest.mark.parametrize("image_shape", [(1, 8, 8), (1, 28, 28)])
def test_conv_works_for_digits_and_mnist(image_shape):
    model = ConvAutoencoder(image_shape, 4)
    c, h, w = image_shape
    assert model.input_size == c * h * w and model.init_args["input_size"] == c * h * w
    assert model(torch.zeros(2, c, h, w)).shape == (2, c, h, w)
    assert model(torch.zeros(2, c * h * w)).shape == (2, c * h * w)


def test_conv_image_and_flat_input_agree():
    model = ConvAutoencoder((1, 8, 8), 3, skip=True)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x).flatten(1), model(x.flatten(1)))
    assert torch.equal(model.encode(x), model.encode(x.flatten(1)))


def test_conv_skip_decode_uses_zero_skips_and_given_skips():
    model = ConvAutoencoder((1, 8, 8), 3, skip=True)
    x = torch.rand(4, 64)
    z, skips = model.encode_with_skips(x)
    assert len(skips) == 1 and skips[0].shape == (4, 16, 4, 4)
    assert torch.equal(model.decode(z, skips), model(x))
    zeros = [torch.zeros_like(s) for s in skips]
    assert torch.equal(model.decode(z), model.decode(z, zeros))
    assert not torch.equal(model.decode(z), model(x))  # the skips carry information


def test_conv_without_skip_is_a_function_of_the_code():
    model = ConvAutoencoder((1, 8, 8), 3)
    x = torch.rand(4, 64)
    z, skips = model.encode_with_skips(x)
    assert skips == []
    assert torch.equal(model.decode(z), model(x))
    with pytest.raises(ValueError, match="skip=False"):
        model.decode(z, [torch.zeros(4, 16, 4, 4)])


@pytest.mark.parametrize(
    "image_shape, match",
    [
        ((8, 8), r"image_shape must be \(channels, height, width\), got \(8, 8\)"),
        ((1, 0, 8), r"image_shape\[1\] must be an int >= 1, got 0"),
        ("1x8x8", r"image_shape must be \(channels, height, width\)"),
    ],
)
def test_conv_bad_image_shape(image_shape, match):
    with pytest.raises(ValueError, match=match):
        ConvAutoencoder(image_shape, 2)


def test_conv_image_shape_must_match_the_data():
    model = ConvAutoencoder((1, 28, 28), 2)
    with pytest.raises(ValueError, match=r"does not match image_shape=\(1, 28, 28\)"):
        model(torch.zeros(3, 64))
    with pytest.raises(ValueError, match=r"does not match image_shape=\(1, 28, 28\)"):
        model(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="input_size is 784"):
        aelab.train_autoencoder(model, aelab.data.digits(), epochs=1, batch_size=64)


def test_conv_other_bad_arguments():
    with pytest.raises(
        ValueError, match=r"bottleneck_size \(65\) must not exceed input_size \(64\)"
    ):
        ConvAutoencoder((1, 8, 8), 65)
    with pytest.raises(ValueError, match=r"channels\[1\] must be an int >= 1, got 0"):
        ConvAutoencoder((1, 8, 8), 2, channels=(4, 0))
    with pytest.raises(ValueError, match="channels must be a non-empty sequence"):
        ConvAutoencoder((1, 8, 8), 2, channels=())
    with pytest.raises(TypeError, match="skip must be True or False"):
        ConvAutoencoder((1, 8, 8), 2, skip="yes")
    with pytest.raises(ValueError, match=r"input_size \(60\) must equal C\*H\*W = 64"):
        ConvAutoencoder((1, 8, 8), 2, input_size=60)


# --- trained comparisons -----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    return aelab.data.split(aelab.data.digits(), test_size=0.2, seed=0)


def test_linear_autoencoder_reaches_pca_error(digits_split):
    train, test = digits_split
    k = 4
    mean = train.X.mean(0)
    _, _, Vh = torch.linalg.svd(train.X - mean, full_matrices=False)
    V = Vh[:k].T  # (64, k): the first k principal directions

    def pca_error(X):
        return float((((X - mean) @ V @ V.T + mean - X) ** 2).mean())

    with aelab.seeded(0):
        model = aelab.LinearAutoencoder(64, k)
    aelab.train_autoencoder(
        model,
        train,
        epochs=1000,
        batch_size=len(train),
        lr=3e-2,
        lr_schedule="cosine",
        progress=False,
    )
    ae_test = aelab.reconstruction_error(model, test.X)
    assert ae_test == pytest.approx(pca_error(test.X), rel=0.03)
    # PCA is the optimum on the training set: the AE can approach it, not beat it
    assert aelab.reconstruction_error(model, train.X) >= pca_error(train.X) * (1 - 1e-4)


def test_conv_skips_reconstruct_better_than_no_skips(digits_split):
    train, test = digits_split
    errors = {}
    for skip in (False, True):
        with aelab.seeded(0):
            model = ConvAutoencoder((1, 8, 8), 2, skip=skip)
        aelab.train_autoencoder(model, train, epochs=8, batch_size=64, lr=3e-3, progress=False)
        errors[skip] = aelab.reconstruction_error(model, test.X)
    assert errors[True] < 0.25 * errors[False], errors


# --- issue 14: a constructor refuses a model too large to build, before allocating it --------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: aelab.Autoencoder(3, 1, 5, 2),
        lambda: aelab.Autoencoder.from_widths([20, 10], 1, 2),
        lambda: aelab.LinearAutoencoder(5, 2),
        lambda: aelab.ResNetAutoencoder(2, 1, 64, 2),
        lambda: aelab.VAE(64, 2, 32, 1),
        lambda: aelab.ConvAutoencoder((1, 8, 8), 4),
        lambda: aelab.ConvAutoencoder((3, 28, 20), 2, skip=True, channels=(4, 8, 16)),
    ],
)
def test_parameter_count_guard_counts_exactly(build, monkeypatch):
    from aelab.models import _base

    n = sum(p.numel() for p in build().parameters())
    monkeypatch.setattr(_base, "MAX_MODEL_PARAMETERS", n)
    build()  # exactly at the cap: built
    monkeypatch.setattr(_base, "MAX_MODEL_PARAMETERS", n - 1)
    with pytest.raises(ValueError, match=f"would have {n:,} parameters"):
        build()


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: aelab.Autoencoder(2, 1, hidden_size=10**5), "hidden_size=100000"),
        (lambda: aelab.LinearAutoencoder(10**12, 1), "input_size=1000000000000"),
        (lambda: aelab.ResNetAutoencoder(2, 1, hidden_size=10**9), "hidden_size=1000000000"),
        (lambda: aelab.VAE(10**6, 2, hidden_size=10**4), "input_size=1000000"),
        (lambda: aelab.ConvAutoencoder((1, 10**5, 10**5), 2), r"image_shape=\[1, 100000, 100000\]"),
    ],
)
def test_huge_models_are_refused_naming_their_arguments(build, name):
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=name):
        build()
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "build",
    [
        lambda: aelab.Autoencoder(2, 1, 1, 10**12),
        lambda: aelab.VAE(2, 1, 1, 10**12),
        lambda: aelab.ResNetAutoencoder(2, 1, 1, 10**12),
    ],
)
def test_a_huge_layer_count_is_refused_without_building_a_list(build):
    with pytest.raises(ValueError, match="1000000000000"):
        build()
