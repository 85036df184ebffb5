import pytest
import torch
from torch import nn

import aelab
from aelab.summary import ModelSummary


def test_mlp_rows_shapes_and_counts():
    model = aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
    table = aelab.summary(model, (2,))
    assert isinstance(table, ModelSummary)
    linears = [r for r in table.rows if r.kind == "Linear"]
    assert [r.output_shape for r in linears] == [
        (-1, 20),
        (-1, 10),
        (-1, 1),
        (-1, 10),
        (-1, 20),
        (-1, 2),
    ]
    assert [r.params for r in linears] == [60, 210, 11, 20, 220, 42]
    assert table.total_params == table.trainable_params == 563  # the course's count
    assert sum(r.params for r in table.rows) == table.total_params


@pytest.mark.parametrize(
    "model, input_shape",
    [
        (aelab.ConvAutoencoder((1, 8, 8), 2, skip=True), (1, 8, 8)),
        (aelab.ConvAutoencoder((1, 28, 28), 4), 784),
        (aelab.VAE(64, 2, hidden_size=32, layers=2), (64,)),
        (aelab.ResNetAutoencoder(2, 1, hidden_size=16, blocks=2), 2),
        (aelab.LinearAutoencoder(5, 2), [5]),
    ],
)
def test_every_model_adds_up(model, input_shape):
    table = aelab.summary(model, input_shape)
    assert table.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in table.rows) == table.total_params
    assert table.rows[-1].output_shape[1:] in {
        (model.input_size,),
        tuple(getattr(model, "image_shape", ())),
    }


def test_conv_shapes_follow_the_encoder():
    table = aelab.summary(aelab.ConvAutoencoder((1, 28, 28), 4), (1, 28, 28))
    shapes = {r.name: r.output_shape for r in table.rows}
    assert shapes["encoder.down.0.0"] == (-1, 16, 14, 14)
    assert shapes["encoder.down.1.0"] == (-1, 32, 7, 7)
    assert shapes["encoder.to_code.1"] == (-1, 4)
    assert shapes["decoder.up.1"] == (-1, 1, 28, 28)


def test_str_is_a_printable_table():
    text = str(aelab.summary(aelab.Autoencoder(2, 1, hidden_size=20, layers=1), 2))
    lines = text.splitlines()
    assert lines[0] == "Autoencoder on input [-1, 2]"
    assert lines[2].split() == ["Layer", "Type", "Output", "shape", "Params"]
    assert any(
        line.split()[:2] == ["encoder.0", "Linear"] and line.endswith(" 60") for line in lines
    )
    assert "Total params: 163" in text and "Non-trainable params: 0" in text
    assert repr(aelab.summary(aelab.LinearAutoencoder(2, 1), 2)).startswith("LinearAutoencoder")


def test_frozen_and_shared_layers_and_container_parameters():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Linear(3, 3)
            self.scale = nn.Parameter(torch.ones(3))  # held by the container itself

        def forward(self, x):
            return self.shared(self.shared(x)) * self.scale

    model = Odd()
    model.shared.bias.requires_grad_(False)
    table = aelab.summary(model, 3)
    assert [(r.name, r.params) for r in table.rows] == [
        ("shared", 12),
        ("shared", 0),
        ("(other)", 3),
    ]
    assert table.total_params == 15 and table.trainable_params == 12
    assert "Non-trainable params: 3" in str(table)


def test_leaves_the_model_as_it_was():
    model = aelab.VAE(4, 2, hidden_size=8, layers=1)
    model.train()
    aelab.summary(model, 4)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"input_shape must be one sample's shape"):
        aelab.summary(aelab.LinearAutoencoder(2, 1), ())
    with pytest.raises(ValueError, match=r"input_shape\[0\] must be an int >= 1, got 0"):
        aelab.summary(aelab.LinearAutoencoder(2, 1), (0,))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        aelab.summary("model", (2,))


@pytest.mark.parametrize(
    "argv, first_line, total",
    [
        (
            [
                "--model",
                "autoencoder",
                "--input-size",
                "2",
                "--bottleneck",
                "1",
                "--hidden",
                "20",
                "--layers",
                "2",
            ],
            "Autoencoder on input [-1, 2]",
            "1,003",
        ),
        (
            ["--model", "conv", "--image-shape", "1", "8", "8", "--bottleneck", "2", "--skip"],
            "ConvAutoencoder on input [-1, 1, 8, 8]",
            "10,355",
        ),
        (
            [
                "--model",
                "vae",
                "--input-size",
                "64",
                "--bottleneck",
                "2",
                "--hidden",
                "32",
                "--layers",
                "1",
            ],
            "VAE on input [-1, 64]",
            "4,420",
        ),
    ],
)
def test_cli_summary(argv, first_line, total, capsys):
    from aelab.cli import main

    assert main(["summary", *argv]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first_line and f"Total params: {total}" in out


def test_cli_summary_of_a_saved_model_and_bad_input(tmp_path, capsys):
    from aelab.cli import main

    path = aelab.save(aelab.ConvAutoencoder((1, 8, 8), 3), tmp_path / "conv.pt")
    assert main(["summary", "--load", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ConvAutoencoder on input [-1, 1, 8, 8]")
    assert main(["summary", "--model", "linear", "--input-size", "2", "--bottleneck", "3"]) == 1
    assert "bottleneck_size (3) must not exceed input_size (2)" in capsys.readouterr().err


def test_input_shape_that_does_not_fit_the_model_is_named():
    with pytest.raises(
        ValueError,
        match=r"input_shape \(5,\) does not fit Autoencoder, whose "
        r"input_size is 2",
    ):
        aelab.summary(aelab.Autoencoder(2, 1), 5)
    with pytest.raises(ValueError, match=r"input_shape \(1, 8, 9\) does not fit ConvAutoencoder"):
        aelab.summary(aelab.ConvAutoencoder((1, 8, 8), 2), (1, 8, 9))

    class Plain(nn.Module):  # no init_args: the forward pass itself finds the mismatch
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x):
            return self.layer(x)

    with pytest.raises(ValueError, match=r"model could not run on input_shape \(4,\)"):
        aelab.summary(Plain(), 4)


def test_huge_input_shape_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"input_shape \(1000000, 1000000\) has 1e\+12 values"):
        aelab.summary(aelab.Autoencoder(2, 1), (10**6, 10**6))
