"""The second Ctrl-C leaves at once, as a short message and exit code 130 rather than a traceback
(the first one, which saves and exits 128 + signum, is tested end to end in test_resume_exact)."""
import logging
import signal
from types import SimpleNamespace

import pytest

from trainer.base_trainer import BaseTrainer
from utils import main_guard


def test_second_sigint_interrupts_at_once():
    trainer = SimpleNamespace(stop_signal=None, logger=logging.getLogger("test"))
    BaseTrainer._on_stop_signal(trainer, signal.SIGINT, None)
    assert trainer.stop_signal == signal.SIGINT  # first: finish the step, then save
    with pytest.raises(KeyboardInterrupt):
        BaseTrainer._on_stop_signal(trainer, signal.SIGINT, None)


def test_interrupt_before_training_exits_130_without_a_resume_hint(capsys):
    @main_guard
    def interrupted():
        raise KeyboardInterrupt  # Ctrl-C while imports or data loading run: no run to resume yet

    with pytest.raises(SystemExit) as exit_info:
        interrupted()
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: exited at once without saving") and "python train.py -r" not in err
    assert "Traceback" not in err


def test_second_ctrl_c_exits_130_naming_the_run_folder(tmp_path, capsys):
    trainer = SimpleNamespace(stop_signal=signal.SIGINT, checkpoint_dir=tmp_path / "models" / "Tiny" / "0101_1")

    @main_guard
    def second_ctrl_c():
        BaseTrainer._on_stop_signal(trainer, signal.SIGINT, None)

    with pytest.raises(SystemExit) as exit_info:
        second_ctrl_c()
    assert exit_info.value.code == 130
    assert f"python train.py -r {trainer.checkpoint_dir}" in capsys.readouterr().err
