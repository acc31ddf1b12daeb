from abc import abstractmethod

import torch.nn as nn


class BaseModel(nn.Module):
    """Base class for all models."""

    @abstractmethod
    def forward(self, *inputs):
        raise NotImplementedError

    def __str__(self):
        """Model prints with the number of trainable parameters."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return super().__str__() + f"\nTrainable parameters: {trainable}"
