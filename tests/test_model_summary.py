"""The model summary (shapes, parameters, FLOPs, memory) and the profiler (trainer.profile,
train.py --profile)."""
import json
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch.autograd import DeviceType

from conftest import only_run, tiny_config
from model.model import MnistModel
from model.summary import optimizer_state_bytes, summarize
from reliability_helpers import run_train_in_process
from trainer.profiling import RANGES, report_lines, summarize_profile

RESNET18_PUBLISHED_GMACS = 1.814  # torchvision's table ("GFLOPS 1.81") counts multiply-adds at 224 x 224


def test_lenet_summary_counts_every_module_and_leaves_the_model_as_it_was():
    model = MnistModel().train()
    model.conv1.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], amsgrad=True)
    batch = torch.randn(8, 1, 28, 28)
    rng = torch.get_rng_state()
    summary = summarize(model, batch, optimizer)
    assert model.training and all(module.training for module in model.modules())
    assert torch.equal(rng, torch.get_rng_state())

    rows = {row.name: row for row in summary.rows}
    assert rows["conv1"].output_shape == "[10, 24, 24]" and rows["conv1"].training == "frozen"
    assert rows["fc1"].output_shape == "[50]" and rows["fc1"].trainable == 320 * 50 + 50
    # a multiply-add is 2 FLOPs: conv1 10 x 24 x 24 outputs x 25 taps, conv2 20 x 8 x 8 x 250, fc1, fc2
    assert rows["conv1"].flops == 2 * 10 * 24 * 24 * 25 and rows["fc2"].flops == 2 * 50 * 10
    assert summary.flops_per_sample == 2 * (144_000 + 320_000 + 16_000 + 500)
    assert (summary.trainable, summary.frozen) == (21_580, 260)
    assert summary.parameter_bytes == 21_840 * 4 and summary.gradient_bytes == 21_580 * 4
    # Adam with amsgrad: exp_avg, exp_avg_sq, max_exp_avg_sq per parameter and a step count per tensor
    assert summary.optimizer_bytes == 3 * 21_580 * 4 + 6 * 4


@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    lambda params: torch.optim.AdamW(params),
    lambda params: torch.optim.RMSprop(params, centered=True),
])
def test_optimizer_state_estimate_matches_the_state_after_a_step(make_optimizer):
    model = MnistModel()
    optimizer = make_optimizer(model.parameters())
    estimate = optimizer_state_bytes(optimizer)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    assert estimate == optimizer_state_bytes(optimizer) > 0


def test_resnet18_forward_flops_match_the_published_figure():
    model = torchvision.models.resnet18(weights=None)
    summary = summarize(model, torch.zeros(1, 3, 224, 224))
    assert summary.trainable == 11_689_512
    assert summary.flops_per_sample / 2 / 1e9 == pytest.approx(RESNET18_PUBLISHED_GMACS, rel=0.01)
    assert {row.name: row.output_shape for row in summary.rows}["layer4"] == "[512, 7, 7]"


def test_profile_writes_a_trace_the_time_shares_and_the_top_operators(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1, "data_loader.args.limit": 256})
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", config, "--profile", "3")
    assert code == 0
    profile = tmp_path / "saved" / "log" / "Tiny" / only_run(tmp_path / "saved").name / "profile"
    summary = json.loads((profile / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["warmup_steps"] == 3  # 6 steps per epoch: 3 warm-up, 3 profiled
    assert set(summary["shares"]) == {*RANGES, "framework"}
    assert all(0 <= share <= 1 for share in summary["shares"].values())
    assert sum(summary["shares"].values()) == pytest.approx(1.0)
    assert summary["shares"]["forward"] > 0 and summary["shares"]["backward"] > 0
    assert any(row["operator"].startswith("aten::") for row in summary["top_operators"])
    events = json.loads((profile / "trace.json").read_text())["traceEvents"]
    assert sum(event.get("name", "").startswith("ProfilerStep#") for event in events) == 3
    assert {event["name"] for event in events} >= set(RANGES.values())


def test_on_cuda_the_shares_come_from_the_host_ranges_and_the_table_lists_kernels_with_short_names():
    def event(key, device, cpu_us=0, self_device_us=0, annotation=False):
        return SimpleNamespace(key=key, device_type=device, cpu_time_total=cpu_us, self_cpu_time_total=0,
                               self_device_time_total=self_device_us, count=2, is_user_annotation=annotation)

    kernel = "void at::native::elementwise_kernel<" + "x" * 300 + ">"
    averages = [event("train/forward", DeviceType.CPU, cpu_us=400_000),
                event("train/forward", DeviceType.CUDA, self_device_us=390_000, annotation=True),
                event("Optimizer.step#Adam.step", DeviceType.CUDA, self_device_us=300_000, annotation=True),
                event("aten::convolution", DeviceType.CPU, self_device_us=250_000),
                event(kernel, DeviceType.CUDA, self_device_us=200_000),
                event("Memcpy HtoD", DeviceType.CUDA, self_device_us=100_000)]
    result = summarize_profile(averages, window_seconds=1.0, steps=10, warmup=5, on_cuda=True)
    assert result["shares"]["forward"] == pytest.approx(0.4)
    assert [row["operator"] for row in result["top_operators"]] == [kernel, "Memcpy HtoD"]
    lines = report_lines(result, "trace.json")
    assert max(len(line) for line in lines) < 130 and any(line.strip().startswith("void at::native") for line in lines)
