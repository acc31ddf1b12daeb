"""pytorch-template's BaseTrainer attribute names, and the ones earlier versions of this project
used, for Trainer subclasses written against them. Each reads (or sets) the object that owns the
value now: the monitor (trainer.monitor) and the early-stopping callback (trainer.early_stop)."""


class TemplateNames:
    @property
    def mnt_mode(self):
        """"min", "max", or "off" when nothing is monitored (the template's names)."""
        return self.monitor.mode or "off"

    @property
    def mnt_metric(self):
        return self.monitor.key

    @property
    def mnt_best(self):
        return self.monitor.best

    @mnt_best.setter
    def mnt_best(self, value):
        self.monitor.best = value

    monitor_metric = mnt_metric
    monitor_best = mnt_best

    @property
    def early_stop(self):
        """Validations without improvement after which training stops (0: never)."""
        return self.early_stopping.patience

    @property
    def epochs_since_improvement(self):
        return self.early_stopping.epochs_since_improvement
