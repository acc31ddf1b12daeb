"""The hand-written script of the whole-process benchmark: what a careful user writes without a
framework for the default config's run, as one file that imports only torch and torchvision's
MNIST. It does the Trainer's work: the MNIST training images held as one uint8 tensor and
normalised per batch (as the fast in-memory path does), a 10% validation split, LeNet, Adam and
StepLR, loss and metrics summed on the device and read every `log_every` steps, validation,
and a checkpoint each epoch written atomically (temporary file, fsync, rename).

    python benchmarks/plain_script.py --data-dir DATA --save-dir OUT --epochs 2
"""
import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.datasets import MNIST

MEAN, STD = 0.1307, 0.3081


class LeNet(nn.Module):
    """The same layers as the project's MnistModel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, p=0.5, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def batch_metrics(output, target):
    """Loss, accuracy and top-3 accuracy of one batch, as one tensor (no sync with the device)."""
    top3 = torch.topk(output, 3, dim=1)[1]
    return torch.stack([F.nll_loss(output, target), (output.argmax(1) == target).float().mean(),
                        (top3 == target.unsqueeze(1)).any(1).float().mean()])


def batches(images, targets, order, batch_size):
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield images[index].float().div_(255).sub_(MEAN).div_(STD), targets[index]


def train_epoch(model, optimizer, images, targets, batch_size, log_every, generator):
    model.train()
    sums, count = torch.zeros(3), 0
    order = torch.randperm(len(images), generator=generator)
    for step, (data, target) in enumerate(batches(images, targets, order, batch_size)):
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            sums += batch_metrics(output, target) * len(target)
        count += len(target)
        if step % log_every == 0:
            print(f"step {step}: loss {float(sums[0]) / count:.4f}", flush=True)
    return (sums / count).tolist()


@torch.no_grad()
def validate(model, images, targets, batch_size):
    model.eval()
    sums = torch.zeros(3)
    for data, target in batches(images, targets, torch.arange(len(images)), batch_size):
        sums += batch_metrics(model(data), target) * len(target)
    return (sums / len(images)).tolist()


def save_atomically(state, path):
    partial = f"{path}.partial"
    with open(partial, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw")
    parser.add_argument("--save-dir", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    mnist = MNIST(args.data_dir, train=True, download=False)
    images, targets = mnist.data.unsqueeze(1).contiguous(), mnist.targets
    permutation = torch.randperm(len(images))
    n_valid = len(images) // 10
    valid, train = permutation[:n_valid].sort().values, permutation[n_valid:].sort().values
    model = LeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    generator = torch.Generator().manual_seed(args.seed)
    os.makedirs(args.save_dir, exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        loss, accuracy, top3 = train_epoch(model, optimizer, images[train], targets[train], args.batch_size,
                                           int(args.batch_size ** 0.5), generator)
        val_loss, val_accuracy, val_top3 = validate(model, images[valid], targets[valid], args.batch_size)
        scheduler.step()
        save_atomically({"epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "lr_scheduler": scheduler.state_dict()},
                        os.path.join(args.save_dir, f"checkpoint-epoch{epoch}.pth"))
        print(f"epoch {epoch}: loss {loss:.4f} accuracy {accuracy:.4f} top-3 {top3:.4f} | validation loss "
              f"{val_loss:.4f} accuracy {val_accuracy:.4f} top-3 {val_top3:.4f} | {time.perf_counter() - start:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()
