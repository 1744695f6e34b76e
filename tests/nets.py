"""Small PyTorch networks for the format tests: a CNN, a ResNet-like block, an LSTM, a
transformer block. Imported only where torch is installed."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc(x)


class ResBlock(nn.Module):
    def __init__(self, channels=12):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(10, 14, num_layers=2, batch_first=True)
        self.head = nn.Linear(14, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TransformerBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(
            d_model=16, nhead=4, dim_feedforward=32, batch_first=True
        )

    def forward(self, x):
        return self.block(x)


def all_nets(seed=0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {
        "cnn": SmallCNN(),
        "resblock": ResBlock(),
        "lstm": SmallLSTM(),
        "transformer": TransformerBlock(),
    }


EXAMPLE_INPUTS = {
    "cnn": lambda: torch.randn(1, 3, 8, 8),
    "resblock": lambda: torch.randn(1, 12, 6, 6),
    "lstm": lambda: torch.randn(1, 5, 10),
    "transformer": lambda: torch.randn(1, 5, 16),
}
