"""The one thin base every aelab model shares: encode/decode/forward and saved constructor arguments."""

from __future__ import annotations

from torch import nn

from aelab._checks import check_positive_int

# the most parameters a constructor builds: a billion is 4 GB of float32 weights (16 GB with
# Adam's state and gradients), beyond any autoencoder aelab is for; a typo such as
# hidden_size=100000 is refused in microseconds instead of exhausting memory. Raise it
# (aelab.models._base.MAX_MODEL_PARAMETERS) for a model you really want.
MAX_MODEL_PARAMETERS = 1_000_000_000

# name -> class; aelab.load only builds classes listed here. Only aelab's own models are
# listed: a saved file names its class by bare name, so a user's subclass of the same name
# must neither replace aelab's entry nor be built by aelab.load.
MODEL_CLASSES: dict[str, type] = {}


class AutoencoderBase(nn.Module):
    """Subclasses define ``encoder``/``decoder`` (or override encode/decode) and set
    ``init_args``, the constructor arguments that :func:`aelab.save` stores."""

    init_args: dict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__module__.startswith("aelab."):
            return  # a user's model: aelab.save refuses it with a TypeError saying what to do
        existing = MODEL_CLASSES.get(cls.__name__)
        # the same class defined again (importlib.reload, notebook autoreload) replaces its entry
        if existing is not None and _where(existing) != _where(cls):
            raise TypeError(
                f"model class name {cls.__name__!r} is already registered by {_where(existing)}; "
                f"{_where(cls)} needs another name, since saved files name their class by bare name."
            )
        MODEL_CLASSES[cls.__name__] = cls

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))

    @property
    def input_size(self) -> int:
        return self.init_args["input_size"]

    @property
    def bottleneck_size(self) -> int:
        return self.init_args["bottleneck_size"]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.init_args.items())


def _where(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def linear_parameters(sizes) -> int:
    """Parameters of Linear layers through ``sizes`` (weights and biases): sum of (a + 1) * b."""
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def stack_parameters(n_in: int, width: int, depth: int, n_out: int) -> int:
    """:func:`linear_parameters` of ``[n_in, width (depth times), n_out]``, without the list."""
    if depth == 0:
        return (n_in + 1) * n_out
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out


def check_parameter_count(model_name: str, count: int, args: dict) -> None:
    """Refuse, before anything is allocated, a model larger than :data:`MAX_MODEL_PARAMETERS`."""
    if count > MAX_MODEL_PARAMETERS:
        given = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ValueError(
            f"{model_name}({given}) would have {count:,} parameters ({4 * count / 2**30:.3g} GiB "
            f"in float32), more than the {MAX_MODEL_PARAMETERS:.0e} aelab builds; choose smaller "
            "sizes (is one of them a typo?)."
        )


def check_sizes(input_size, bottleneck_size) -> tuple[int, int]:
    """Validate the two sizes every autoencoder has."""
    input_size = check_positive_int("input_size", input_size)
    bottleneck_size = check_positive_int("bottleneck_size", bottleneck_size)
    if bottleneck_size > input_size:
        raise ValueError(
            f"bottleneck_size ({bottleneck_size}) must not exceed input_size ({input_size}): "
            "an autoencoder compresses; choose bottleneck_size <= input_size."
        )
    return input_size, bottleneck_size
