"""User code written against pytorch-template's public API keeps working."""
import json

import pytest
import torch
from torch.utils.data import TensorDataset

import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from base import BaseDataLoader, BaseTrainer
from conftest import PROJECT_ROOT
from parse_config import ConfigParser
from test import evaluate
from utils import MetricTracker, inf_loop


class TemplateStyleTrainer(BaseTrainer):
    """Written like the template's own Trainer: _train_epoch returns the epoch's log dict."""

    def __init__(self, model, criterion, metric_ftns, optimizer, config, data_loader):
        super().__init__(model, criterion, metric_ftns, optimizer, config)
        self.data_loader = data_loader
        self.train_metrics = MetricTracker("loss", *[m.__name__ for m in metric_ftns], writer=self.writer)

    def _train_epoch(self, epoch):
        self.model.train()
        self.train_metrics.reset()
        for data, target in self.data_loader:
            self.optimizer.zero_grad()
            output = self.model(data)
            loss = self.criterion(output, target)
            loss.backward()
            self.optimizer.step()
            self.writer.set_step(epoch)
            self.train_metrics.update("loss", loss.item())
        return {**self.train_metrics.result(), "val_loss": self.train_metrics.avg("loss")}


def random_digits(n):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, 28, 28, generator=generator)
    return TensorDataset(images, torch.randint(0, 10, (n,), generator=generator))


def test_template_style_subclass_trains_and_checkpoints(tmp_path):
    config_dict = json.loads((PROJECT_ROOT / "config.json").read_text())
    config_dict["trainer"].update(epochs=2, save_dir=str(tmp_path), save_period=1, tensorboard=False, verbosity=0)
    config = ConfigParser(config_dict)
    loader = BaseDataLoader(random_digits(40), batch_size=16, shuffle=True, validation_split=0.25, num_workers=0)
    assert len(loader.sampler) == 30 and len(loader.split_validation().sampler) == 10
    model = config.init_obj("arch", module_arch)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters())
    loss_fn = getattr(module_loss, config["loss"])
    trainer = TemplateStyleTrainer(model, loss_fn, [module_metric.accuracy], optimizer, config, loader)
    trainer.train()
    assert sorted(p.name for p in config.save_dir.glob("*.pth")) == [
        "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "model_best.pth"]
    assert next(inf_loop([1, 2])) == 1
    make_scheduler = config.init_ftn("lr_scheduler", torch.optim.lr_scheduler)
    assert make_scheduler(optimizer).step_size == config["lr_scheduler"]["args"]["step_size"]


def test_validation_split_uses_its_own_generator_not_numpy_global_state():
    import numpy as np

    np.random.seed(1)
    first = BaseDataLoader(random_digits(50), 10, True, 0.2, 0, seed=7).valid_sampler.indices
    np.random.seed(2)
    second = BaseDataLoader(random_digits(50), 10, True, 0.2, 0, seed=7).valid_sampler.indices
    third = BaseDataLoader(random_digits(50), 10, True, 0.2, 0, seed=8).valid_sampler.indices
    assert first == second and first != third
    state = np.random.get_state()[1].copy()
    BaseDataLoader(random_digits(50), 10, True, 0.2, 0, seed=7)
    assert (np.random.get_state()[1] == state).all()


def test_metrics_are_averaged_over_samples_not_batches():
    model = module_arch.MnistModel().eval()
    dataset = random_digits(50)
    metrics = [module_metric.accuracy]
    by_sevens = evaluate(model, BaseDataLoader(dataset, 7, False, 0.0, 0), module_loss.nll_loss, metrics, "cpu")
    one_batch = evaluate(model, BaseDataLoader(dataset, 50, False, 0.0, 0), module_loss.nll_loss, metrics, "cpu")
    assert by_sevens["accuracy"] == pytest.approx(one_batch["accuracy"], abs=1e-6)
    assert by_sevens["loss"] == pytest.approx(one_batch["loss"], abs=1e-5)
