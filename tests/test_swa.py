"""trainer.swa: stochastic weight averaging on torch.optim.swa_utils (AveragedModel, SWALR,
update_bn). The average and SWALR's state are in every checkpoint (their exact resume is in
test_resume_exact.py's matrix); model_swa.pth holds the final average with recomputed
batch-norm statistics, and evaluation uses it; bad settings are reported."""
import json

import pytest
import torch

import train
from conftest import only_run, tiny_config
from evaluation.evaluate import evaluation_weights
from parse_config import ConfigParser
from reliability_helpers import load
from utils import ConfigError

TRAIN_BATCHES = 6  # 192 training digits in batches of 32
SWA_LR = 0.0005
# a small network with batch norm, so that update_bn has statistics to recompute
BATCH_NORM_MODEL = {"type": "SmallCnn", "args": {"width": 4, "dropout": 0.1}}


def swa_config(tmp_path, mnist_dir, swa, epochs=3, **updates):
    settings = {"trainer.swa": swa, "trainer.epochs": epochs, "data_loader.args.limit": 256, **updates}
    return json.loads(tiny_config(tmp_path, mnist_dir, settings).read_text())


def train_in_process(config_dict, resume=None, run_id=None):
    torch.set_num_threads(1)
    return train.main(ConfigParser(config_dict, resume=resume, run_id=run_id))


def test_average_of_epoch_ends_with_swalr_and_a_final_model(tmp_path, mnist_dir):
    config = swa_config(tmp_path, mnist_dir, {"start_epoch": 2, "lr": SWA_LR, "anneal_epochs": 1})
    trainer = train_in_process(config)
    run = only_run(tmp_path / "saved")
    epoch2, epoch3 = load(run / "checkpoint-epoch2.pth"), load(run / "checkpoint-epoch3.pth")
    assert load(run / "checkpoint-epoch1.pth")["swa"]["updates"] == 0
    assert epoch3["swa"]["updates"] == 2 and epoch3["swa"]["scheduler"]["_step_count"] == 3

    # the average is the equal-weight mean of the weights at the ends of epochs 2 and 3
    for name, weight in epoch3["swa"]["weights"].items():
        expected = (epoch2["state_dict"][name] + epoch3["state_dict"][name]) / 2
        assert torch.allclose(weight, expected, atol=1e-7), name

    # epochs 1-2 train at the configured rate; SWALR (one annealing epoch) then sets SWA_LR
    assert [row["lr"] for row in trainer.history] == [0.002, 0.002, pytest.approx(SWA_LR)]
    assert epoch3["lr_scheduler"]["last_epoch"] == 1  # the configured StepLR stopped after epoch 1

    final = load(run / "model_swa.pth")
    assert final["epoch"] == 3 and final["swa"]["batch_norm_updated"]
    assert not epoch3["swa"]["batch_norm_updated"]
    saved_config = ConfigParser(final["config"], create_dirs=False)
    assert evaluation_weights(saved_config, final) is final["swa"]["weights"]  # test.py evaluates the average
    assert evaluation_weights(saved_config, epoch2) is epoch2["swa"]["weights"]  # as validation did
    assert evaluation_weights(saved_config, load(run / "checkpoint-epoch1.pth")) is not None


def test_final_model_has_batch_norm_statistics_of_the_training_data(tmp_path, mnist_dir):
    config = swa_config(tmp_path, mnist_dir, {"start_epoch": 1, "lr": SWA_LR}, epochs=2, arch=BATCH_NORM_MODEL,
                        loss="cross_entropy")
    train_in_process(config)
    run = only_run(tmp_path / "saved")
    last, final = load(run / "checkpoint-epoch2.pth")["swa"]["weights"], load(run / "model_swa.pth")["swa"]["weights"]
    # update_bn reset the statistics and ran over one epoch of training batches
    assert int(final["features.1.num_batches_tracked"]) == TRAIN_BATCHES
    assert not torch.equal(final["features.1.running_mean"], last["features.1.running_mean"])
    trained = {k: v for k, v in final.items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(trained[k], last[k]) for k in trained)  # the weights are not touched


@pytest.mark.parametrize("swa, ema, message", [
    ({"start_epoch": 1, "lr": 0.01}, {"decay": 0.99}, "trainer.ema and trainer.swa are both set"),
    ({"lr": 0.01}, None, "trainer.swa.start_epoch is missing"),
    ({"start_epoch": 0, "lr": 0.01}, None, "trainer.swa.start_epoch is 0"),
    ({"start_epoch": 5, "lr": 0.01}, None, "trainer.swa.start_epoch is 5, after the last epoch"),
    ({"start_epoch": 1, "lr": -1}, None, "trainer.swa.lr is -1"),
    ({"start_epoch": 1, "lr": 0.01, "anneal_epochs": 1.5}, None, "trainer.swa.anneal_epochs is 1.5"),
    ({"start_epoch": 1, "lr": 0.01, "anneal_strategy": "step"}, None, "trainer.swa.anneal_strategy is 'step'"),
    ({"start_epoch": 1, "lr": 0.01, "start": 2}, None, "trainer.swa.start is not an SWA setting"),
])
def test_bad_swa_settings_name_the_key(tmp_path, mnist_dir, swa, ema, message):
    config = swa_config(tmp_path, mnist_dir, swa, epochs=2, **{"trainer.ema": ema})
    with pytest.raises(ConfigError) as err:
        ConfigParser(config, create_dirs=False, preflight=True)
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "saved").exists()
