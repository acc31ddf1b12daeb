"""The hand-written arm of the overhead benchmark: what a careful user writes without a
framework, doing the Trainer's work: train step, loss and metrics summed on the device and read
every `log_every` steps, validation, scheduler step and a checkpoint each epoch, written as the
Trainer writes it (temporary file, fsync, rename), so that a crash never leaves a torn file."""
import torch

from model.loss import nll_loss
from model.metric import accuracy, top_k_acc
from utils.io import atomic_torch_save


class PlainLoop:
    def __init__(self, model, optimizer, scheduler, loader, valid_loader, checkpoint_dir, log_every):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loader, self.valid_loader = loader, valid_loader
        self.checkpoint_dir, self.log_every = checkpoint_dir, log_every
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.last_train_loss = float("nan")

    def epoch(self, epoch):
        self.model.train()
        self.loader.set_epoch(epoch)
        sums, count = torch.zeros(3), 0  # loss, accuracy, top-3 accuracy, weighted by batch size
        for step, (data, target) in enumerate(self.loader):
            output = self.model(data)
            loss = nll_loss(output, target)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            sums += torch.stack([loss.detach(), accuracy(output, target), top_k_acc(output, target)]) * len(target)
            count += len(target)
            if step % self.log_every == 0:
                running_loss = float(sums[0]) / count  # the logging step's sync, as in the Trainer
        self.last_train_loss = float(sums[0]) / count
        valid = self.validate()
        self.scheduler.step()
        atomic_torch_save({"epoch": epoch, "state_dict": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "lr_scheduler": self.scheduler.state_dict()},
                   self.checkpoint_dir / f"checkpoint-epoch{epoch}.pth")
        return running_loss, valid

    @torch.no_grad()
    def validate(self):
        self.model.eval()
        sums, count = torch.zeros(3), 0
        for data, target in self.valid_loader:
            output = self.model(data)
            sums += torch.stack([nll_loss(output, target), accuracy(output, target),
                                 top_k_acc(output, target)]) * len(target)
            count += len(target)
        return (sums / count).tolist()
