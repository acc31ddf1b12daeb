import torch.nn as nn
import torch.nn.functional as F

from model.base_model import BaseModel


class MnistModel(BaseModel):
    """LeNet-style convolutional network of pytorch-template."""

    def __init__(self, num_classes=10, logits=False, dropout=0.5):
        """logits: return raw scores (for bce_with_logits, cross_entropy) instead of
        log-probabilities (for nll_loss). One output (a binary task) needs raw scores.
        dropout: drop probability of both dropout layers; 0 makes training deterministic
        given the data order (used to compare multi-process with single-process runs)."""
        super().__init__()
        if num_classes == 1 and not logits:
            raise ValueError("MnistModel with num_classes=1 needs logits=true: the log_softmax of a "
                             "single score is always 0. Use it with the bce_with_logits loss.")
        self.logits = logits
        self.dropout = dropout
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)  # not view(): a channels_last input is not contiguous in NCHW order
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.fc2(x)
        return x if self.logits else F.log_softmax(x, dim=1)


class SmallCnn(BaseModel):
    """Two 3x3 convolution blocks and a linear head for small images of any size (8x8 digits,
    28x28 MNIST): the pooling at the end adapts to the image size. Returns raw scores (use the
    cross_entropy loss)."""

    def __init__(self, in_channels=1, num_classes=10, width=32, dropout=0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class Mlp(BaseModel):
    """A multi-layer perceptron for table rows: `num_inputs` columns (after the CSV loader's
    encoding) -> `hidden` layers -> `num_classes` raw scores (use the cross_entropy loss), or
    `num_outputs` values (regression: one per target, with mse_loss; multi-label: one per label)."""

    def __init__(self, num_inputs, num_classes=None, hidden=(64,), dropout=0.1, num_outputs=None):
        if (num_classes is None) == (num_outputs is None):
            raise ValueError("Mlp needs either num_classes (classification) or num_outputs (regression, "
                             "multi-label), not both")
        num_classes = num_classes if num_classes is not None else num_outputs
        super().__init__()
        layers, width = [], num_inputs
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)
