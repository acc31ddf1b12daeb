"""tune.py --lr-find and --find-batch-size: the sweep on a copy of the model, its plot and CSV,
the suggestion rules on scripted curves, the batch-size search under a simulated CUDA OOM and
under a measured CPU memory cap, and the command leaving no run folder."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import tuning.batch_size_finder as bs_finder
from conftest import run_script, tiny_config
from parse_config import ConfigParser
from tuning.batch_size_finder import find_batch_size, try_batch_size
from tuning.finder_commands import batch_size_find, lr_find
from tuning.lr_finder import LRSweep, suggest_lr, sweep_figure, sweep_lr
from tuning.parts import build_parts
from utils import ConfigError


def make_config(tmp_path, mnist_dir, updates=None):
    path = tiny_config(tmp_path, mnist_dir, updates)
    return ConfigParser(json.loads(path.read_text()), create_dirs=False)


def scripted_sweep(losses):
    lrs = list(np.logspace(-6, 1, len(losses)))
    return LRSweep(lrs, list(losses), list(losses), diverged=False)


def test_suggestions_fall_on_the_descent_before_the_minimum():
    x = np.linspace(0, 1, 100)
    # flat, a steep fall centred at x = 0.6, bottom at 0.8, then a blow-up
    losses = 2.3 - 1.5 / (1 + np.exp(-(x - 0.6) * 30)) + np.where(x > 0.8, (x - 0.8) * 20, 0)
    bottom = int(np.argmin(losses))
    suggested = {rule: suggest_lr(scripted_sweep(losses), rule) for rule in ("valley", "steepest")}
    for rule, (lr, index) in suggested.items():
        assert 0 < index < bottom, (rule, index)
        assert lr == pytest.approx(np.logspace(-6, 1, 100)[index])
    assert abs(suggested["steepest"][1] - 60) <= 1  # the inflection point
    assert suggested["valley"][1] == 39  # the longest descent is steps 0..79: a third and a sixth in
    assert suggested["valley"][0] < suggested["steepest"][0]  # the valley rule is the more careful one


def test_the_plot_shows_every_raw_loss_below_the_blow_up():
    x = np.linspace(0, 1, 100)
    smoothed = 2.3 - 1.5 / (1 + np.exp(-(x - 0.6) * 30)) + np.where(x > 0.8, (x - 0.8) * 20, 0)
    raw = smoothed + np.random.default_rng(0).normal(0, 0.3, 100)  # noisy steps dip below the smoothed curve
    sweep = LRSweep(list(np.logspace(-6, 1, 100)), list(raw), list(smoothed), diverged=False)
    figure = sweep_figure(sweep, 40, "valley")
    bottom, top = figure.axes[0].get_ylim()
    assert bottom < raw.min() and top < raw.max()  # no raw loss cut off at the bottom; the blow-up is
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_a_loss_that_never_falls_has_no_suggestion():
    with pytest.raises(ConfigError, match="never decreased"):
        suggest_lr(scripted_sweep(np.linspace(2.0, 3.0, 50)))


def test_sweep_trains_a_copy_and_writes_plot_and_csv(tmp_path, mnist_dir):
    config = make_config(tmp_path, mnist_dir)
    parts = build_parts(config)
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    sweep = sweep_lr(parts, 1e-5, 1.0, num_steps=25)
    assert all(torch.equal(before[k], v) for k, v in parts.model.state_dict().items())
    assert len(sweep.lrs) == len(sweep.smoothed) <= 25
    assert sweep.lrs[0] == pytest.approx(1e-5)
    assert all(b / a == pytest.approx(10 ** (5 / 24)) for a, b in zip(sweep.lrs, sweep.lrs[1:]))

    lr, png, _ = lr_find(config, 1e-5, 1.0, num_steps=30, out_dir=tmp_path / "finder")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(tmp_path / "finder" / "lr_find.csv")
    assert list(table.columns) == ["lr", "loss", "smoothed_loss"] and 10 <= len(table) <= 30
    assert lr in table["lr"].tolist()
    assert not (tmp_path / "saved").exists()  # no run folder, no checkpoint


def test_batch_size_search_stops_at_a_simulated_cuda_oom(tmp_path, mnist_dir, monkeypatch):
    real_step = bs_finder.train_step

    def step_that_runs_out_above_100(model, optimizer, criterion, data, target):
        if data.shape[0] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(model, optimizer, criterion, data, target)

    monkeypatch.setattr(bs_finder, "train_step", step_that_runs_out_above_100)
    parts = build_parts(make_config(tmp_path, mnist_dir))
    size, trials = find_batch_size(parts, start_size=8, steps=2)
    tried = [t.batch_size for t in trials]
    assert tried[:5] == [8, 16, 32, 64, 128]  # doubling until the first failure
    assert 96 <= size <= 100
    assert all(t.fits == (t.batch_size <= 100) for t in trials)
    assert all(t.samples_per_s > 0 for t in trials if t.fits)


def test_batch_size_search_respects_a_measured_cpu_memory_cap(tmp_path, mnist_dir):
    config = make_config(tmp_path, mnist_dir, {"data_loader.args.batch_size": 4})
    parts = build_parts(config)
    small = try_batch_size(parts, 4, steps=2).peak_memory_mb
    large = try_batch_size(parts, 384, steps=2).peak_memory_mb
    assert large > small  # a bigger batch needs more memory, so a cap in between must bite
    cap = (small + large) / 2
    size, trials, _ = batch_size_find(config, steps=2, memory_cap_mb=cap)
    chosen = next(t for t in trials if t.batch_size == size)
    assert chosen.fits and chosen.peak_memory_mb <= cap
    assert 4 <= size < 384
    assert any(not t.fits and t.peak_memory_mb > cap for t in trials)


def test_batch_size_grows_to_the_training_set_without_a_cap(tmp_path, mnist_dir):
    parts = build_parts(make_config(tmp_path, mnist_dir, {"data_loader.args.limit": 200}))
    size, trials = find_batch_size(parts, start_size=64, steps=2)
    assert size == 150  # 200 samples, a quarter of them held out for validation
    assert [t.batch_size for t in trials] == [64, 128, 150]


@pytest.mark.slow
def test_finder_commands_exit_0_and_leave_no_run_folder(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir)
    # a range that starts where this tiny model starts to learn: with 20 steps from 1e-7 the
    # smoothed loss of 512 digits is still at its first batch's value when the sweep diverges
    result = run_script("tune.py", "--lr-find", "--lr-steps", "30", "--lr-range", "1e-4", "1", "--find-batch-size",
                        "--max-batch-size", "64", "--bs-steps", "2", "-c", config, check=True)
    overrides = [line.split("=", 1)[1] for line in result.stdout.splitlines() if "-o optimizer.args.lr=" in line
                 and "use it with" in line]
    assert len(overrides) == 1 and math.isfinite(float(overrides[0]))
    assert (tmp_path / "saved" / "lr_find" / "Tiny" / "lr_find.png").exists()
    assert not (tmp_path / "saved" / "models").exists()
