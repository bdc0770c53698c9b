"""PixelRNN with Row LSTM layers (van den Oord, Kalchbrenner & Kavukcuoglu 2016, section 3.1)."""

from __future__ import annotations

import torch
from torch import nn

import arena

from .autoregressive import AutoregressiveGenerator, MaskedConv2d, MaskedConvolutionModel, require_single_channel


class RowLSTM(nn.Module):
    """A Row LSTM layer: rows are processed top to bottom; the gates of row r come from a
    1x3 mask-B convolution of the layer's input on row r (input-to-state) plus a width-3
    convolution of the hidden state of row r-1 (state-to-state), which gives each pixel the
    triangular context above it.

    [o, f, i, g] = σ/tanh(K_ss ⊛ h_{r-1} + K_is ⊛ x_r);  c_r = f ⊙ c_{r-1} + i ⊙ g;  h_r = o ⊙ tanh(c_r).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d("B", channels, 4 * hidden, (1, 3), padding=(0, 1))
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        from_input = self.input_to_state(x)
        state = x.new_zeros(batch, self.hidden, width)
        cell = x.new_zeros(batch, self.hidden, width)
        rows = []
        for row in range(height):
            gates = from_input[:, :, row] + self.state_to_state(state)
            output, forget, update, candidate = gates.chunk(4, dim=1)
            cell = forget.sigmoid() * cell + update.sigmoid() * candidate.tanh()
            state = output.sigmoid() * cell.tanh()
            rows.append(state)
        return torch.stack(rows, dim=2)


class ResidualRowLSTM(nn.Module):
    """A Row LSTM of h units on 2h input features, brought back to 2h by a 1x1 convolution and
    added to its input (the paper's residual connections)."""

    def __init__(self, channels: int):
        super().__init__()
        self.lstm = RowLSTM(channels, channels // 2)
        self.up = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.lstm(x))


class PixelRNNModel(MaskedConvolutionModel):
    """A 7x7 mask-A convolution, residual Row LSTM layers, two 1x1 ReLU layers and a softmax over
    the pixel levels."""

    def __init__(self, levels: int, shape: tuple[int, int, int], channels: int, layers: int, head: int):
        super().__init__(levels, shape, channels, head, [ResidualRowLSTM(channels) for _ in range(layers)])


class PixelRNN(AutoregressiveGenerator):
    """PixelRNN (Row LSTM): rows of LSTM state above each pixel, a softmax over pixel levels."""

    name = "pixelrnn"
    bounds = {"channels": arena.Range(2), "layers": arena.Range(1)}

    def __init__(self, channels: int = 64, layers: int = 2, head: int = 128, epochs: int = 20, lr: float = 2e-3,
                 batch_size: int = 64):
        self.channels = channels
        self.layers = layers
        self.head = head
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def validate(self):
        if self.channels % 2:
            raise arena.ArenaError(f"channels={self.channels} is not even (the residual layers halve it)")

    def build(self, dataset, ctx):
        require_single_channel(self.name, dataset.shape)
        return PixelRNNModel(dataset.levels, dataset.shape, self.channels, self.layers, self.head)


@arena.hookimpl
def register_generators(register):
    register(PixelRNN)
