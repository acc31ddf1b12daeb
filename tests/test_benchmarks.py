"""The benchmark scripts run end to end on tiny sizes (no timing is asserted)."""
import pytest
import torch

from conftest import run_script


@pytest.mark.slow  # about a minute: the whole-process and start-up tables start 17 processes
def test_overhead_benchmark_arms_do_the_same_work():
    result = run_script("benchmarks/overhead.py", "--epochs", "2", "--data-epochs", "2", "--train-size", "640",
                        "--process-pairs", "1", "--startup-rounds", "1", check=True)
    [same_work] = [line for line in result.stdout.splitlines() if line.startswith("both arms trained identically")]
    assert same_work.endswith(": True"), same_work
    for line in ("| hand-written loop |", "| Trainer |", "| per-sample (torchvision) |", "| in-memory (fast) |",
                 "| hand-written script |", "| python train.py -c CONFIG |", "| python predict.py --help |",
                 "| python test.py -r CHECKPOINT --no-report |", "| python predict.py -r CHECKPOINT -i ONE.png |"):
        assert line in result.stdout, line
    assert "python train.py -c CONFIG / hand-written script, wall time: " in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path for machines without CUDA")
def test_gpu_check_exits_cleanly_without_cuda():
    result = run_script("benchmarks/gpu_check.py", check=True)
    assert "CUDA is not available" in result.stdout


@pytest.mark.slow  # writes 300 PNGs and trains three epochs
def test_data_paths_benchmark_runs(tmp_path):
    result = run_script("benchmarks/data_paths.py", "--images", "300", "--folder", tmp_path / "pngs", check=True)
    for line in ("| per-sample: ImageFolder + DataLoader(workers) |", "| in-memory, cache on disk |",
                 "batched augmentation share"):
        assert line in result.stdout


@pytest.mark.slow
def test_policies_benchmark_prints_the_callback_ema_and_swa_ratios():
    result = run_script("benchmarks/policies.py", "--epochs", "1", "--train-size", "512", check=True)
    lines = result.stdout.splitlines()
    assert any(line.startswith("EMA / no EMA: wall") for line in lines)
    assert any(line.startswith("3 no-op callbacks / none: wall") for line in lines)
    assert any(line.startswith("SWA / no SWA: wall") for line in lines)
