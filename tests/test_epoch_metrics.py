"""torchmetrics classes as config metrics: exact over the epoch, resumable inside an epoch, and
allowed in a checkpoint's config only from the modules that cannot load code."""
import pytest
import torch
from sklearn.metrics import f1_score
from torchmetrics.classification import MulticlassF1Score

from config.resolve import resolve_type
from evaluation.metrics import EpochMetrics
from utils import ConfigError
from utils.metric_tracker import is_stateful_metric


def scored_batches(sizes, num_classes=4):
    generator = torch.Generator().manual_seed(3)
    for size in sizes:
        scores = torch.randn(size, num_classes, generator=generator)
        yield scores, torch.randint(0, num_classes, (size,), generator=generator)


def named_f1():
    metric = MulticlassF1Score(num_classes=4, average="macro")
    metric.__name__ = "f1"
    return metric


def test_epoch_metric_is_exact_over_uneven_batches():
    batches = list(scored_batches([7, 50, 3]))
    metrics = EpochMetrics([named_f1()], "cpu")
    for output, target in batches:
        metrics.update(output, target)
    predicted = torch.cat([o.argmax(1) for o, _ in batches])
    target = torch.cat([t for _, t in batches])
    exact = f1_score(target, predicted, average="macro")
    assert metrics.compute()["f1"] == pytest.approx(exact, abs=1e-6)
    weighted_batch_mean = sum(len(t) * f1_score(t, o.argmax(1), average="macro") for o, t in batches) / len(target)
    assert abs(weighted_batch_mean - exact) > 1e-3  # what averaging per-batch values would have logged


def test_state_saved_inside_an_epoch_resumes_exactly():
    first, second = list(scored_batches([20])), list(scored_batches([20, 30]))[1:]
    whole = EpochMetrics([named_f1()], "cpu")
    for output, target in first + second:
        whole.update(output, target)
    before = EpochMetrics([named_f1()], "cpu")
    for output, target in first:
        before.update(output, target)
    resumed = EpochMetrics([named_f1()], "cpu")
    resumed.load_state(before.state())
    for output, target in second:
        resumed.update(output, target)
    assert resumed.compute() == whole.compute()


def test_per_class_results_are_logged_one_column_per_class():
    metric = MulticlassF1Score(num_classes=4, average=None)
    metric.__name__ = "f1"
    metrics = EpochMetrics([metric], "cpu")
    for output, target in scored_batches([40]):
        metrics.update(output, target)
    assert sorted(metrics.compute()) == ["f1_0", "f1_1", "f1_2", "f1_3"]


def test_function_metrics_are_not_stateful():
    from model.metric import accuracy

    assert not is_stateful_metric(accuracy)
    assert is_stateful_metric(named_f1())


def test_checkpoint_config_may_name_torchmetrics_classification_only():
    entry = {"type": "MulticlassF1Score", "module": "torchmetrics.classification"}
    assert resolve_type(entry, "metrics.0", trusted=False) is MulticlassF1Score
    top_level = {"type": "F1Score", "module": "torchmetrics"}  # its neighbours load model files
    with pytest.raises(ConfigError, match="--trust"):
        resolve_type(top_level, "metrics.0", trusted=False)
    assert resolve_type(top_level, "metrics.0", trusted=True)
