"""The second Ctrl-C leaves at once, as a short message and exit code 130 rather than a traceback
(the first one, which saves and exits 128 + signum, is tested end to end in test_resume_exact)."""
import logging
import signal
from types import SimpleNamespace

import pytest

from base.base_trainer import BaseTrainer
from utils import main_guard


def test_second_sigint_interrupts_at_once():
    trainer = SimpleNamespace(stop_signal=None, logger=logging.getLogger("test"))
    BaseTrainer._on_stop_signal(trainer, signal.SIGINT, None)
    assert trainer.stop_signal == signal.SIGINT  # first: finish the step, then save
    with pytest.raises(KeyboardInterrupt):
        BaseTrainer._on_stop_signal(trainer, signal.SIGINT, None)


def test_interrupt_exits_130_with_a_resume_hint(capsys):
    @main_guard
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        interrupted()
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: exited at once without saving") and "python train.py -r" in err
    assert "Traceback" not in err
