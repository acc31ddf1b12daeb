"""trainer.ema: an exponential moving average of the weights (torch.optim.swa_utils) that
validation, model_best and test.py use, saved in every checkpoint; bad settings are reported."""
import json

import pytest
import torch

import train
from conftest import only_run, tiny_config
from evaluation.evaluate import evaluation_weights
from parse_config import ConfigParser
from reliability_helpers import load
from utils import ConfigError

STEPS_PER_EPOCH = 12  # 384 training digits in batches of 32


def run_with(tmp_path, mnist_dir, ema, epochs=1):
    path = tiny_config(tmp_path, mnist_dir, {"trainer.ema": ema, "trainer.epochs": epochs})
    torch.set_num_threads(1)
    return train.main(ConfigParser(json.loads(path.read_text())))


def test_checkpoint_holds_the_average_and_evaluation_uses_it(tmp_path, mnist_dir):
    trainer = run_with(tmp_path, mnist_dir, {"decay": 0.9})
    checkpoint = load(only_run(tmp_path / "saved") / "model_best.pth")
    ema = checkpoint["ema"]
    assert int(ema["updates"]) == STEPS_PER_EPOCH
    assert set(ema["weights"]) == set(checkpoint["state_dict"])
    assert not torch.equal(ema["weights"]["fc2.weight"], checkpoint["state_dict"]["fc2.weight"])

    # validation ran on the averaged weights: evaluating them again gives the logged val_loss
    model = trainer.weight_average.averaged.module.eval()
    losses, count = 0.0, 0
    with torch.no_grad():
        for data, target in trainer.valid_data_loader:
            losses += torch.nn.functional.nll_loss(model(data), target, reduction="sum").item()
            count += len(target)
    assert losses / count == pytest.approx(trainer.history[-1]["val_loss"], rel=1e-5)

    config = ConfigParser(checkpoint["config"], create_dirs=False)
    assert evaluation_weights(config, checkpoint) is ema["weights"]
    config["trainer"]["ema"]["use_for_eval"] = False
    assert evaluation_weights(config, checkpoint) is checkpoint["state_dict"]


def test_without_ema_the_checkpoint_has_no_average(tmp_path, mnist_dir):
    trainer = run_with(tmp_path, mnist_dir, None)
    assert trainer.weight_average is None
    assert load(only_run(tmp_path / "saved") / "checkpoint-epoch1.pth")["ema"] is None


@pytest.mark.parametrize("ema, message", [
    ({"decay": 1.5}, "trainer.ema.decay is 1.5"),
    ({"decay": "0.99"}, "trainer.ema.decay is '0.99'"),
    ({"decya": 0.99}, "trainer.ema.decya is not an EMA setting"),
    ({"decay": 0.99, "use_for_eval": "yes"}, "trainer.ema.use_for_eval is 'yes'"),
    (0.999, "trainer.ema is 0.999"),
])
def test_bad_ema_settings_name_the_key(tmp_path, mnist_dir, ema, message):
    path = tiny_config(tmp_path, mnist_dir, {"trainer.ema": ema})
    with pytest.raises(ConfigError) as err:
        ConfigParser(json.loads(path.read_text()), create_dirs=False, preflight=True)
    assert message in str(err.value), str(err.value)
