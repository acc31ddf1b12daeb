"""Speed features each train a few steps in-process and check their intended effect: the fast
data path, AMP, accumulation, clipping, compile, cuDNN autotuning and DataLoader options."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, transforms

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
import trainer.speed
from conftest import tiny_config
from data_loader.in_memory import InMemoryBatches, InMemoryDataLoader
from parse_config import ConfigParser
from trainer import Trainer
from utils import ConfigError
from utils.seed import seed_everything


class NoDropoutNet(nn.Module):
    """Small deterministic CNN: no dropout, so two ways of training it can be compared exactly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=5, stride=2)
        self.fc = nn.Linear(4 * 12 * 12, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(F.relu(self.conv(x)).flatten(1)), dim=1)


def make_trainer(tmp_path, mnist_dir, updates=None, model=None):
    """Build config, loaders, model, optimizer and Trainer as train.py does, in this process."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = ConfigParser(json.loads(tiny_config(tmp_path, mnist_dir, updates).read_text()))
    seed_everything(config["seed"])
    loader = config.init_obj("data_loader", module_data)
    model = config.init_obj("arch", module_arch) if model is None else model
    optimizer = config.init_obj("optimizer", torch.optim, list(model.parameters()))
    return Trainer(model, config.init_loss(module_loss), config.init_metrics(module_metric), optimizer,
                   config=config, device=torch.device("cpu"), data_loader=loader,
                   valid_data_loader=loader.split_validation())


def mnist_loader(mnist_dir, in_memory, **kwargs):
    args = dict(batch_size=32, shuffle=True, validation_split=0.25, num_workers=0, limit=400,
                download=False, seed=7, in_memory=in_memory)
    return module_data.MnistDataLoader(str(mnist_dir), **{**args, **kwargs})


def assert_same_batches(fast, per_sample):
    fast_batches, slow_batches = list(fast), list(per_sample)
    assert len(fast_batches) == len(slow_batches) == len(fast) == len(per_sample)
    for (fast_x, fast_y), (slow_x, slow_y) in zip(fast_batches, slow_batches):
        assert fast_x.dtype == slow_x.dtype and fast_x.shape == slow_x.shape
        torch.testing.assert_close(fast_x, slow_x, rtol=0, atol=1e-6)
        assert torch.equal(fast_y, slow_y)


# ---- fast in-memory data path ------------------------------------------------------------------
def test_fast_path_gives_same_samples_order_and_split(mnist_dir):
    fast, per_sample = mnist_loader(mnist_dir, True), mnist_loader(mnist_dir, False)
    assert isinstance(fast.split_validation(), InMemoryBatches)
    for epoch, skip in ((1, 0), (2, 0), (2, 3)):  # reshuffled each epoch; resumed mid-epoch
        fast.set_epoch(epoch, skip)
        per_sample.set_epoch(epoch, skip)
        assert_same_batches(fast, per_sample)
    assert_same_batches(fast.split_validation(), per_sample.split_validation())
    test_args = dict(shuffle=False, validation_split=0.0, training=False, limit=0)
    assert_same_batches(mnist_loader(mnist_dir, True, **test_args), mnist_loader(mnist_dir, False, **test_args))


def test_fast_path_applies_the_target_transform_of_a_binary_task(mnist_dir):
    fast, per_sample = mnist_loader(mnist_dir, True, binary_target=0), mnist_loader(mnist_dir, False, binary_target=0)
    assert_same_batches(fast, per_sample)
    targets = torch.cat([target for _, target in fast])
    assert targets.dtype == torch.float32 and set(targets.tolist()) == {0.0, 1.0}


def test_fast_path_refuses_a_transform_it_cannot_batch(mnist_dir):
    augmenting = transforms.Compose([transforms.RandomRotation(10), transforms.ToTensor()])
    dataset = datasets.MNIST(str(mnist_dir), train=False, transform=augmenting)
    with pytest.raises(ConfigError, match="in_memory to false"):
        InMemoryDataLoader(dataset, 32, True, 0.0, 0)
    per_sample = InMemoryDataLoader(dataset, 32, True, 0.0, 0, in_memory=False)
    assert next(iter(per_sample))[0].shape == (32, 1, 28, 28)


def test_loader_options_reach_torch_dataloader_on_per_sample_path(mnist_dir):
    loader = mnist_loader(mnist_dir, False, num_workers=1, persistent_workers=True, prefetch_factor=3)
    assert loader.persistent_workers and loader.prefetch_factor == 3 and loader.num_workers == 1
    fast = mnist_loader(mnist_dir, True)
    loader.set_epoch(1)
    fast.set_epoch(1)
    assert_same_batches(loader, fast)


# ---- trainer switches --------------------------------------------------------------------------
def test_bf16_autocast_trains_on_cpu(tmp_path, mnist_dir):
    trainer = make_trainer(tmp_path, mnist_dir, {"trainer.amp": "bf16", "trainer.epochs": 1})
    conv_dtypes = []
    trainer.model.conv1.register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert set(conv_dtypes) == {torch.bfloat16}
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert torch.isfinite(torch.tensor(trainer.history[-1]["loss"]))


def test_fp16_uses_grad_scaler_and_checkpoints_its_state(tmp_path, mnist_dir):
    trainer = make_trainer(tmp_path, mnist_dir, {"trainer.amp": "fp16", "trainer.epochs": 1})
    assert trainer.scaler.is_enabled()
    trainer.train()
    checkpoint = torch.load(trainer.checkpoint_dir / "checkpoint-epoch1.pth", weights_only=True)
    assert checkpoint["grad_scaler"]["scale"] == trainer.scaler.get_scale()
    assert torch.isfinite(torch.tensor(trainer.history[-1]["loss"]))


def test_accumulating_4_batches_of_32_matches_one_batch_of_128(tmp_path, mnist_dir):
    common = {"data_loader.args.limit": 128, "data_loader.args.validation_split": 0.0,
              "trainer.monitor": "off", "trainer.epochs": 1, "lr_scheduler": None,
              "optimizer": {"type": "SGD", "args": {"lr": 0.5}}}
    torch.manual_seed(0)
    accumulated = make_trainer(tmp_path / "a", mnist_dir, {**common, "trainer.accum_steps": 4},
                               model=NoDropoutNet())
    reference = NoDropoutNet()
    reference.load_state_dict(accumulated.model.state_dict())
    accumulated.train()  # 4 batches of 32: one optimizer step

    whole = make_trainer(tmp_path / "b", mnist_dir, {**common, "data_loader.args.batch_size": 128})
    whole.data_loader.set_epoch(1)
    [(data, target)] = list(whole.data_loader)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    initial = [p.detach().clone() for p in reference.parameters()]
    F.nll_loss(reference(data), target).backward()
    optimizer.step()
    for after_accum, after_one, start in zip(accumulated.model.parameters(), reference.parameters(), initial):
        assert not torch.equal(after_one, start)
        torch.testing.assert_close(after_accum, after_one, rtol=1e-4, atol=1e-5)


def test_clip_grad_norm_bounds_the_norm_the_optimizer_sees(tmp_path, mnist_dir):
    max_norm = 0.01
    trainer = make_trainer(tmp_path, mnist_dir, {"trainer.clip_grad_norm": max_norm, "trainer.epochs": 1})
    norms = []

    def record_norm(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    trainer.optimizer.register_step_pre_hook(record_norm)
    trainer.train()
    assert len(norms) == len(trainer.data_loader)
    assert max(norms) <= max_norm * (1 + 1e-4)
    assert min(norms) >= max_norm * 0.99  # LeNet's raw gradients are far larger: clipping acted


def test_cudnn_benchmark_switch_sets_the_backend_flag(tmp_path, mnist_dir):
    previous = torch.backends.cudnn.benchmark
    try:
        make_trainer(tmp_path, mnist_dir, {"trainer.cudnn_benchmark": True})
        assert torch.backends.cudnn.benchmark is True
        make_trainer(tmp_path / "off", mnist_dir)
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = previous


def test_a_deterministic_run_records_the_flags_and_leaves_the_process_as_it_was(tmp_path, mnist_dir):
    import api

    result = api.run(tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1, "data_loader.args.limit": 128}),
                     overrides={"trainer.deterministic": True})
    flags = json.loads((result.run_dir / "record.json").read_text())["parts"][0]["determinism"]
    assert flags["deterministic_algorithms"] and flags["cudnn_deterministic"] and not flags["cudnn_benchmark"]
    assert flags["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and result.status == "finished"
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_deterministic_with_cudnn_benchmark_is_refused(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.deterministic": True, "trainer.cudnn_benchmark": True})
    import train

    with pytest.raises(ConfigError, match="trainer.deterministic and trainer.cudnn_benchmark are both true"):
        ConfigParser.from_args(train.make_arg_parser()[0], argv=["-c", str(config)])
    assert not (tmp_path / "saved").exists()


def test_an_operation_without_a_deterministic_version_names_the_setting():
    err = RuntimeError("adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, but you set "
                       "'torch.use_deterministic_algorithms(True)'.\nMore text")
    explained = trainer.speed.explain_nondeterministic_operation(err, "saved/models/X/1/checkpoint-epoch2.pth")
    assert str(explained).startswith("trainer.deterministic is true, but the model uses an operation with no "
                                     "deterministic version on this device (adaptive_avg_pool2d_backward_cuda")
    assert "checkpoint-epoch2.pth" in str(explained)
    assert trainer.speed.explain_nondeterministic_operation(RuntimeError("other")) is None


def test_compile_where_unsupported_warns_and_trains_uncompiled(tmp_path, mnist_dir, monkeypatch, capsys):
    monkeypatch.setattr(trainer.speed, "compile_unsupported_reason", lambda device: "no compiler here")
    built = make_trainer(tmp_path, mnist_dir, {"trainer.compile": True})
    assert "torch.compile is unsupported here: no compiler here" in capsys.readouterr().out
    assert not hasattr(built.model, "_orig_mod")
    with pytest.raises(ConfigError, match="trainer.compile is 'fastest'"):
        make_trainer(tmp_path / "bad", mnist_dir, {"trainer.compile": "fastest"})


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path, mnist_dir):
    if trainer.speed.compile_unsupported_reason(torch.device("cpu")):
        pytest.skip("torch.compile is unsupported on this machine (the message is tested above)")
    updates = {"data_loader.args.limit": 256, "trainer.epochs": 1}
    torch.manual_seed(0)
    eager_model = NoDropoutNet()
    compiled_model = NoDropoutNet()
    compiled_model.load_state_dict(eager_model.state_dict())
    eager = make_trainer(tmp_path / "eager", mnist_dir, updates, model=eager_model)
    compiled = make_trainer(tmp_path / "compiled", mnist_dir, {**updates, "trainer.compile": True},
                            model=compiled_model)
    assert hasattr(compiled.model, "_orig_mod")
    eager.train()
    compiled.train()
    for key in ("loss", "val_loss"):
        assert compiled.history[-1][key] == pytest.approx(eager.history[-1][key], rel=1e-3)
    checkpoint = torch.load(compiled.checkpoint_dir / "checkpoint-epoch1.pth", weights_only=True)
    assert not any(key.startswith("_orig_mod") for key in checkpoint["state_dict"])


def test_channels_last_trains_the_default_model(tmp_path, mnist_dir):
    trainer = make_trainer(tmp_path, mnist_dir, {"trainer.channels_last": True, "trainer.epochs": 1})
    layouts = []

    def record_layout(module, args):
        layouts.append(args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous())

    trainer.model.conv2.register_forward_pre_hook(record_layout)
    trainer.train()
    assert layouts and all(layouts)
    assert torch.isfinite(torch.tensor(trainer.history[-1]["loss"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_data_device_cuda_without_cuda_is_a_config_error(mnist_dir):
    with pytest.raises(ConfigError, match=r"data_loader\.args\.data_device is 'cuda', but CUDA is not available"):
        mnist_loader(mnist_dir, True, data_device="cuda")


def test_data_device_cpu_keeps_the_batches_on_the_cpu(mnist_dir):
    loader = mnist_loader(mnist_dir, True, data_device="cpu")
    data, _ = next(iter(loader))
    assert loader.images.device.type == "cpu" and data.device.type == "cpu"
    torch.testing.assert_close(data, next(iter(mnist_loader(mnist_dir, True)))[0])
