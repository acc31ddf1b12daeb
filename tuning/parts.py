"""The pieces of one training step, built from a config the way train.py builds them, for the
finders: they train a throw-away copy of the model and never make a run folder."""
import copy
from dataclasses import dataclass

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.model as module_arch
from config.instantiate import resolve
from model.transfer import build_model, optimizer_param_groups
from utils import prepare_device
from utils.seed import seed_everything


@dataclass
class TrainingParts:
    config: object
    model: torch.nn.Module
    criterion: object
    device: torch.device

    def make_optimizer(self, model):
        """A fresh optimizer for `model` (a copy of self.model), configured as in the config."""
        groups = optimizer_param_groups(model, self.config["optimizer"])
        return self.config.init_obj("optimizer", torch.optim, groups)

    def model_copy(self):
        return copy.deepcopy(self.model).train()

    def make_loader(self, batch_size=None):
        """The config's training loader (without the validation part), optionally re-batched."""
        if batch_size is None:
            loader = self.config.init_obj("data_loader", module_data)
        else:
            loader = _loader_with_batch_size(self.config, batch_size)
        return loader  # its sampler already leaves out the validation split


def build_parts(config):
    """Seeded model, loss and device for `config` (a ConfigParser), single process."""
    seed_everything(config["seed"])
    device, _ = prepare_device(config["n_gpu"])
    model = build_model(config, module_arch, load_start_weights=True).to(device)
    return TrainingParts(config, model, config.init_loss(module_loss), device)


def _loader_with_batch_size(config, batch_size):
    entry = config["data_loader"]
    args = {**entry.get("args", {}), "batch_size": batch_size}
    loader_class = resolve(entry, "data_loader", module_data, config.trusted)
    return loader_class(**args)


def train_step(model, optimizer, criterion, data, target):
    """One full training step: forward, backward, optimizer step. Returns the loss tensor."""
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(model(data), target)
    loss.backward()
    optimizer.step()
    return loss.detach()


def batches(loader, device):
    """Endless (data, target) batches on `device`."""
    while True:
        for data, target in loader:
            yield data.to(device), target.to(device)
