"""The one thin base every aelab model shares: encode/decode/forward and saved constructor arguments."""

from __future__ import annotations

from torch import nn

from aelab._checks import check_positive_int

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
