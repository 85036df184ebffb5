import pytest
import torch

import aelab
from aelab import Autoencoder, LinearAutoencoder


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "widths, expected", [([20, 10], 563), ([50, 50], 5503), ([50, 50, 50], 10603)]
)
def test_parameter_counts_match_the_course_trainer(widths, expected):
    assert n_params(Autoencoder.from_widths(widths, bottleneck_size=1, input_size=2)) == expected


def test_linear_autoencoder_has_seven_parameters():
    assert n_params(LinearAutoencoder(2, 1)) == 7


def test_autoencoder_structure_mirrors_the_encoder():
    model = Autoencoder(5, 2, hidden_size=7, layers=3)
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 7), (7, 7), (7, 2)]
    assert isinstance(model.encoder[-1], torch.nn.Linear)  # linear bottleneck
    assert isinstance(model.decoder[-1], torch.nn.Linear)  # linear output
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.decoder) == 3
    assert len(Autoencoder(3, 1, hidden_size=4, layers=0).encoder) == 1


@pytest.mark.parametrize(
    "model", [Autoencoder(4, 2, 8, 2), Autoencoder.from_widths([6], 1, 4), LinearAutoencoder(4, 3)]
)
def test_shapes_and_gradients(model):
    x = torch.randn(9, 4)
    z = model.encode(x)
    assert z.shape == (9, model.bottleneck_size)
    assert model.decode(z).shape == x.shape
    assert torch.equal(model(x), model.decode(z))
    model(x).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=2, bottleneck_size=0), "bottleneck_size must be an int >= 1, got 0"),
        (
            dict(input_size=2, bottleneck_size=3),
            r"bottleneck_size \(3\) must not exceed input_size \(2\)",
        ),
        (
            dict(input_size=2, bottleneck_size=1, hidden_size=0),
            "hidden_size must be an int >= 1, got 0",
        ),
        (dict(input_size=2, bottleneck_size=1, layers=-1), "layers must be an int >= 0, got -1"),
        (dict(input_size=0, bottleneck_size=1), "input_size must be an int >= 1, got 0"),
    ],
)
def test_bad_sizes_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(**kwargs)


def test_non_integer_sizes_raise_type_errors():
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        Autoencoder(2, 1, hidden_size=2.5)
    with pytest.raises(ValueError, match=r"widths\[1\] must be an int >= 1"):
        Autoencoder.from_widths([3, 0], 1, 2)


def test_seeded_builds_identical_models_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    with aelab.seeded(5):
        a = Autoencoder(2, 1, 8, 2)
    assert torch.equal(torch.get_rng_state(), state)
    with aelab.seeded(5):
        b = Autoencoder(2, 1, 8, 2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_user_class_named_like_an_aelab_model_leaves_the_registry_alone(tmp_path):
    from aelab.models import MODEL_CLASSES, AutoencoderBase

    before = dict(MODEL_CLASSES)

    class Autoencoder(AutoencoderBase):  # noqa: F811 -- the clash is the point
        def __init__(self):
            super().__init__()
            self.init_args = dict(input_size=2, bottleneck_size=1)
            self.encoder, self.decoder = torch.nn.Linear(2, 1), torch.nn.Linear(1, 2)

    assert MODEL_CLASSES == before and MODEL_CLASSES["Autoencoder"] is aelab.Autoencoder
    model = aelab.Autoencoder(2, 1, 4, 1)
    loaded = aelab.load(aelab.save(model, tmp_path / "m.pt"))
    assert type(loaded) is aelab.Autoencoder and loaded.init_args == model.init_args
    with pytest.raises(TypeError, match=r"must be an aelab model .*got test_models\..*Autoencoder"):
        aelab.save(Autoencoder(), tmp_path / "user.pt")


def test_two_aelab_model_classes_of_one_name_are_an_error():
    from aelab.models import MODEL_CLASSES, AutoencoderBase

    before = dict(MODEL_CLASSES)
    with pytest.raises(
        TypeError,
        match=r"'LinearAutoencoder' is already registered by "
        r"aelab\.models\.linear\.LinearAutoencoder",
    ):
        type("LinearAutoencoder", (AutoencoderBase,), {"__module__": "aelab.models.other"})
    assert MODEL_CLASSES == before


# --- issue 14, item 9: conflicting or ignored constructor arguments are errors -----------------------


@pytest.mark.parametrize(
    "kwargs",
    [dict(hidden_size="x"), dict(hidden_size=8), dict(layers=3), dict(hidden_size=32, layers=2)],
)
def test_widths_with_hidden_size_or_layers_is_an_error(kwargs):
    with pytest.raises(ValueError, match=r"give either widths or hidden_size/layers, not both"):
        Autoencoder(2, 1, widths=[4], **kwargs)


@pytest.mark.parametrize(
    "widths, error, match",
    [
        ("44", TypeError, "widths must be a sequence of ints"),
        (4, TypeError, "widths must be a sequence of ints"),
        ([4.0], TypeError, r"widths\[0\] must be an int"),
        ([[4]], TypeError, r"widths\[0\] must be an int"),
    ],
)
def test_widths_must_be_a_sequence_of_ints(widths, error, match):
    with pytest.raises(error, match=match):
        Autoencoder(2, 1, widths=widths)


def test_widths_accept_arrays_and_defaults_stay_the_documented_ones():
    import numpy as np

    assert Autoencoder(2, 1, widths=np.array([4, 3])).widths == [4, 3]
    assert Autoencoder(2, 1, widths=torch.tensor([4])).widths == [4]
    assert Autoencoder(2, 1).init_args == dict(
        input_size=2, bottleneck_size=1, hidden_size=32, layers=2
    )
    assert Autoencoder(2, 1, None, None).widths == [32, 32]
    assert Autoencoder(2, 1, widths=[]).widths == []


def test_conv_input_size_must_be_an_int_that_matches():
    with pytest.raises(TypeError, match="input_size must be an int"):
        aelab.ConvAutoencoder((1, 4, 4), 2, input_size="16")
    with pytest.raises(TypeError, match="input_size must be an int"):
        aelab.ConvAutoencoder((1, 4, 4), 2, input_size=16.0)
    assert aelab.ConvAutoencoder((1, 4, 4), 2, input_size=16).input_size == 16
