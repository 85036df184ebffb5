"""Convolutional autoencoders for images, with optional U-Net-style skip connections."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from aelab._checks import check_image_shape, check_int, check_positive_int
from aelab.models._base import (
    AutoencoderBase,
    check_parameter_count,
    check_sizes,
    linear_parameters,
)

# every encoder level is a 3x3 convolution with stride 2 and padding 1: it halves
# the height and width (rounding up), ceil(n / 2) = conv_output_size(n, 3, 2, 1)
KERNEL_SIZE, STRIDE, PADDING = 3, 2, 1


def conv_output_size(
    n: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Length of one spatial dimension after a convolution or pooling layer.

    ``floor((n + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``,
    the formula in the documentation of ``torch.nn.Conv2d`` and ``torch.nn.MaxPool2d``
    (whose ``stride`` defaults to ``kernel_size``: pass it explicitly here).

    Parameters
    ----------
    n : int
        Input length (height or width), >= 1.
    kernel_size, stride, dilation : int
        >= 1.
    padding : int
        Zero padding on each side, >= 0.

    Examples
    --------
    >>> conv_output_size(28, kernel_size=3, stride=2, padding=1)
    14
    >>> conv_output_size(28, kernel_size=5)  # a "valid" 5x5 convolution
    24
    >>> conv_output_size(7, kernel_size=2, stride=2)  # 2x2 max-pooling drops the odd row
    3
    """
    n = check_positive_int("n", n)
    kernel_size = check_positive_int("kernel_size", kernel_size)
    stride = check_positive_int("stride", stride)
    padding = check_int("padding", padding, 0)
    dilation = check_positive_int("dilation", dilation)
    span = dilation * (kernel_size - 1) + 1
    if n + 2 * padding < span:
        raise ValueError(
            f"an input of length n={n} with padding={padding} is shorter than the kernel's "
            f"span dilation*(kernel_size-1)+1 = {span}; use a smaller kernel_size or dilation, "
            "or more padding."
        )
    return (n + 2 * padding - span) // stride + 1


def _check_channels(channels) -> tuple[int, ...]:
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        channels = (channels,)
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise ValueError(
            f"channels must be a non-empty sequence of ints >= 1 (one per "
            f"encoder level), got {channels!r}; e.g. channels=(16, 32)."
        )
    return tuple(check_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels))


class _ConvEncoder(nn.Module):
    """Strided convolutions down to a feature map, then a linear layer to the code.

    Returns the code and, for a skip model, every level's feature map except
    the last one (the last one feeds the bottleneck).
    """

    def __init__(self, in_channels, channels, last_map_size, bottleneck_size, skip):
        super().__init__()
        self.skip = skip
        c_in = [in_channels, *channels[:-1]]
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, KERNEL_SIZE, STRIDE, PADDING), nn.ReLU())
            for a, b in zip(c_in, channels)
        )
        self.to_code = nn.Sequential(nn.Flatten(), nn.Linear(last_map_size, bottleneck_size))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        h = images
        for level in self.down:
            h = level(h)
            skips.append(h)
        skips.pop()  # the deepest map goes through the bottleneck, not around it
        return self.to_code(h), (skips if self.skip else [])


class _ConvDecoder(nn.Module):
    """A linear layer from the code to the deepest feature map, then transposed
    convolutions back up; a skip model concatenates the encoder's map of the
    same level (channels first) before each transposed convolution but the first."""

    def __init__(self, out_channels, channels, map_sizes, bottleneck_size, skip):
        super().__init__()
        self.skip = skip
        c_last, (h_last, w_last) = channels[-1], map_sizes[-1]
        self.from_code = nn.Sequential(
            nn.Linear(bottleneck_size, c_last * h_last * w_last),
            nn.ReLU(),
            nn.Unflatten(1, (c_last, h_last, w_last)),
        )
        levels = len(channels)
        c_out = [out_channels, *channels[:-1]]
        self.up = nn.ModuleList()
        for i in reversed(range(levels)):
            c_in = channels[i] * (2 if skip and i < levels - 1 else 1)
            # a transposed stride-2 convolution gives 2n - 1 + output_padding; pick
            # output_padding so each level comes back to the encoder's exact size
            (h_small, w_small), (h_big, w_big) = map_sizes[i + 1], map_sizes[i]
            output_padding = (h_big - (2 * h_small - 1), w_big - (2 * w_small - 1))
            conv = nn.ConvTranspose2d(
                c_in, c_out[i], KERNEL_SIZE, STRIDE, PADDING, output_padding=output_padding
            )
            self.up.append(nn.Sequential(conv, nn.ReLU()) if i > 0 else conv)

    def forward(self, z: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        h = self.from_code(z)
        for j, level in enumerate(self.up):
            if self.skip and j > 0:
                h = torch.cat([h, skips[-j]], dim=1)  # skips[-j]: same level as h
            h = level(h)
        return h


class ConvAutoencoder(AutoencoderBase):
    """Convolutional autoencoder for images, optionally with U-Net-style skips.

    The encoder has one level per entry of ``channels``: a 3x3 convolution
    with stride 2 and ReLU, halving height and width (rounding up, so 28 -> 14
    -> 7 and 8 -> 4 -> 2). A linear layer maps the last feature map to the
    code of ``bottleneck_size`` numbers. The decoder mirrors it with a linear
    layer and transposed convolutions, and ends without an activation.

    Input can be flat ``[n, C*H*W]`` (as :class:`aelab.data.Dataset` stores
    images) or ``[n, C, H, W]``; ``forward`` returns the shape it was given, so
    the same trainer and data serve every model.

    **Skips.** With ``skip=True`` the decoder also receives the encoder's
    feature maps at every level but the deepest (concatenated along channels,
    as in U-Net). Those skips let information **bypass the bottleneck**: the
    reconstruction is no longer a function of the code alone, so its error is
    not comparable with a plain autoencoder's at the same ``bottleneck_size``,
    and ``encode(x)`` does not describe everything the decoder sees. For a
    skip model, ``decode(z)`` without ``skips`` decodes with all-zero skip
    features; what it produces shows how much the decoder relies on the code.
    Use ``decode(*model.encode_with_skips(x))`` for the full reconstruction.

    Parameters
    ----------
    image_shape : (int, int, int)
        ``(channels, height, width)`` of one image, e.g. (1, 8, 8) for digits
        or (1, 28, 28) for MNIST (``Dataset.image_shape``).
    bottleneck_size : int
        Size of the code ``z``; at most ``C*H*W``.
    skip : bool
        U-Net-style skip connections from encoder to decoder.
    channels : sequence of int
        Feature maps per encoder level (the decoder mirrors them). The default
        (16, 32) suits both digits and MNIST.
    input_size : int, optional
        ``C*H*W``, the flat width; only checked. It is part of ``init_args`` so
        the trainer can compare it with the data's width.

    Examples
    --------
    >>> model = ConvAutoencoder((1, 8, 8), bottleneck_size=4)
    >>> model(torch.zeros(5, 64)).shape, model(torch.zeros(5, 1, 8, 8)).shape
    (torch.Size([5, 64]), torch.Size([5, 1, 8, 8]))
    >>> model.encode(torch.zeros(5, 64)).shape, model.decode(torch.zeros(5, 4)).shape
    (torch.Size([5, 4]), torch.Size([5, 64]))
    >>> unet = ConvAutoencoder((1, 28, 28), bottleneck_size=2, skip=True)
    >>> z, skips = unet.encode_with_skips(torch.zeros(3, 784))
    >>> [tuple(s.shape) for s in skips]  # bypasses the 2-number code
    [(3, 16, 14, 14)]
    """

    def __init__(
        self, image_shape, bottleneck_size, skip=False, channels=(16, 32), input_size=None
    ):
        super().__init__()
        image_shape = check_image_shape(image_shape)
        flat_size = math.prod(image_shape)
        if input_size is not None:
            input_size = check_positive_int("input_size", input_size)
        if input_size is not None and input_size != flat_size:
            raise ValueError(
                f"input_size ({input_size!r}) must equal C*H*W = {flat_size} for "
                f"image_shape={image_shape}; leave input_size out."
            )
        flat_size, bottleneck_size = check_sizes(flat_size, bottleneck_size)
        if not isinstance(skip, bool):
            raise TypeError(f"skip must be True or False, got {skip!r}.")
        channels = _check_channels(channels)
        self.init_args = dict(
            image_shape=list(image_shape),
            bottleneck_size=bottleneck_size,
            skip=skip,
            channels=list(channels),
            input_size=flat_size,
        )
        self.image_shape = image_shape
        map_sizes = [image_shape[1:]]  # (height, width) at the input and after each level
        for _ in channels:
            map_sizes.append(
                tuple(conv_output_size(n, KERNEL_SIZE, STRIDE, PADDING) for n in map_sizes[-1])
            )
        self._skip_shapes = [(c, *hw) for c, hw in zip(channels[:-1], map_sizes[1:-1])]
        last_map_size = channels[-1] * math.prod(map_sizes[-1])
        # every 3x3 convolution down, every transposed one up (its input doubled by a skip),
        # and the two linear layers around the code
        c_in, levels = [image_shape[0], *channels[:-1]], len(channels)
        down = sum((a * KERNEL_SIZE**2 + 1) * b for a, b in zip(c_in, channels))
        up = sum(
            channels[i] * (2 if skip and i < levels - 1 else 1) * c_in[i] * KERNEL_SIZE**2 + c_in[i]
            for i in range(levels)
        )
        check_parameter_count(
            "ConvAutoencoder",
            down + up + linear_parameters([last_map_size, bottleneck_size, last_map_size]),
            self.init_args,
        )
        self.encoder = _ConvEncoder(image_shape[0], channels, last_map_size, bottleneck_size, skip)
        self.decoder = _ConvDecoder(image_shape[0], channels, map_sizes, bottleneck_size, skip)

    @property
    def skip(self) -> bool:
        return self.init_args["skip"]

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        C, H, W = self.image_shape
        if x.ndim == 2 and x.shape[1] == C * H * W:
            return x.reshape(len(x), C, H, W)  # (n, C, H, W)
        if x.ndim == 4 and tuple(x.shape[1:]) == self.image_shape:
            return x
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not match image_shape={self.image_shape}: "
            f"expected [n, {C * H * W}] or [n, {C}, {H}, {W}]; build the model with the data's "
            "image_shape (Dataset.image_shape)."
        )

    def encode_with_skips(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The code and the encoder feature maps the decoder's skips take (empty without skips)."""
        return self.encoder(self._as_images(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_with_skips(x)[0]

    def decode(self, z: torch.Tensor, skips: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Flat images ``[n, C*H*W]`` from codes; a skip model uses zero skips unless given them."""
        if not self.skip:
            if skips:
                raise ValueError(
                    "skips were given but this model has skip=False; call decode(z) alone."
                )
            skips = []
        elif skips is None:
            skips = [z.new_zeros(len(z), *shape) for shape in self._skip_shapes]
        return self.decoder(z, skips).flatten(1)

    def forward_with_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat, z)`` in one pass, ``x_hat`` in the shape of ``x``."""
        z, skips = self.encode_with_skips(x)
        return self.decode(z, skips).reshape(x.shape), z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_code(x)[0]
