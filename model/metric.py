"""Metrics take (output, target) and return a 0-dim tensor: the trainer averages them over
samples on the device, so computing a metric never waits for the GPU."""
import torch


def accuracy(output, target):
    with torch.no_grad():
        pred = torch.argmax(output, dim=1)
        assert pred.shape[0] == len(target)
        return (pred == target).float().mean()


def top_k_acc(output, target, k=3):
    with torch.no_grad():
        pred = torch.topk(output, k, dim=1)[1]
        assert pred.shape[0] == len(target)
        return (pred == target.unsqueeze(1)).any(dim=1).float().mean()


def binary_accuracy(output, target, threshold=0.5):
    """Sigmoid of the raw scores, thresholded, compared with 0/1 targets element-wise."""
    with torch.no_grad():
        output = output.reshape(target.shape) if output.numel() == target.numel() else output
        pred = (torch.sigmoid(output.float()) > threshold).to(target.dtype)
        return (pred == target).float().mean()
