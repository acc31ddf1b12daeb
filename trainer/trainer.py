import sys

import numpy as np
import torch
from torchvision.utils import make_grid
from tqdm import tqdm

from base import BaseTrainer
from base.base_trainer import StopRequested
from utils import ConfigError, MetricTracker

from .amp import autocast_context, make_grad_scaler
from .speed import apply_backend_flags, maybe_compile


class Trainer(BaseTrainer):
    """What one training and one validation epoch do with batches."""

    def __init__(self, model, criterion, metric_ftns, optimizer, config, device,
                 data_loader, valid_data_loader=None, lr_scheduler=None, len_epoch=None):
        super().__init__(model, criterion, metric_ftns, optimizer, config)
        cfg = config["trainer"]
        self.device = device
        self.data_loader = data_loader
        self.iteration_based = len_epoch is not None
        self.batches_per_pass = len(data_loader)
        self.len_epoch = len(data_loader) if len_epoch is None else len_epoch
        self.valid_data_loader = valid_data_loader
        self.do_validation = self.valid_data_loader is not None
        self.lr_scheduler = lr_scheduler
        self.log_step = cfg.get("log_step") or int(np.sqrt(data_loader.batch_size))
        self.image_period = cfg.get("image_period", 1)  # epochs between input-image grids
        self.histogram_period = cfg.get("histogram_period", 1)  # epochs between parameter histograms
        self.amp = cfg.get("amp")
        self.accum_steps = cfg.get("accum_steps", 1)
        self.clip_grad_norm = cfg.get("clip_grad_norm")
        self.on_nonfinite = cfg.get("on_nonfinite", "stop")
        self.non_blocking = cfg.get("non_blocking", True) and device.type == "cuda"
        self.channels_last = cfg.get("channels_last", False)
        self.autocast = lambda: autocast_context(self.amp, device)
        autocast_context(self.amp, device)  # validates trainer.amp now, not mid-epoch
        self.scaler = make_grad_scaler(self.amp, device)
        apply_backend_flags(cfg)
        if self.channels_last:  # weights too: a 1-channel input alone does not switch the convolutions
            self.model.to(memory_format=torch.channels_last)
        self.model = maybe_compile(self.model, cfg.get("compile"), device)
        self.show_progress = cfg["verbosity"] > 0 and sys.stderr.isatty()

        metric_names = [m.__name__ for m in self.metric_ftns]
        self.train_metrics = MetricTracker("loss", *metric_names)
        self.valid_metrics = MetricTracker("loss", *metric_names)

    # ---- training ----------------------------------------------------------------------------
    def _train_epoch(self, epoch):
        """Train one epoch, validate, step the scheduler; return the epoch's log dict."""
        self.model.train()
        skip = self.resume_batches_done if epoch == self.start_epoch else 0
        if not skip:
            self.train_metrics.reset()
        first_bad_step = torch.tensor(-1, device=self.device)  # stays on device: no per-step sync
        progress = tqdm(total=self.len_epoch, initial=skip, desc=f"epoch {epoch}", leave=False,
                        disable=not self.show_progress, dynamic_ncols=True)
        for batch_idx, (data, target) in self._epoch_batches(epoch, skip):
            data, target = self._to_device(data), target.to(self.device, non_blocking=self.non_blocking)
            loss, output = self._train_step(data, target, batch_idx)
            # a Python scalar, not torch.tensor(batch_idx, device=...): that is a blocking copy
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), batch_idx, first_bad_step)
            self._update_metrics(self.train_metrics, loss, output, target)
            if batch_idx % self.log_step == 0 or batch_idx == self.len_epoch - 1:
                self._check_finite(first_bad_step, epoch)  # the host-device sync of the logging step
                self._log_step(epoch, batch_idx, data, progress)
            progress.update(1)
            if self.stop_signal is not None and self._at_step_boundary(batch_idx):
                progress.close()
                raise StopRequested(epoch, batch_idx + 1)
        progress.close()
        self._check_finite(first_bad_step, epoch)
        log = self.train_metrics.result()
        log.update(self._learning_rates())
        if self.do_validation:
            log.update({f"val_{k}": v for k, v in self._valid_epoch(epoch).items()})
        self._step_scheduler(log)
        return log

    def _train_step(self, data, target, batch_idx):
        """Forward, backward and (at the end of an accumulation window) the optimizer step."""
        with self.autocast():
            output = self.model(data)
            loss = self.criterion(output, target)
        self.scaler.scale(loss / self.accum_steps).backward()
        if self._at_step_boundary(batch_idx):
            if self.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            if self.on_nonfinite == "skip":
                self._skip_nonfinite_gradients()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), output.detach()

    def _at_step_boundary(self, batch_idx):
        return (batch_idx + 1) % self.accum_steps == 0 or batch_idx == self.len_epoch - 1

    def _skip_nonfinite_gradients(self):
        """on_nonfinite "skip": drop this step's gradients when any is NaN/Inf (one sync)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads])).all():
            self.optimizer.zero_grad(set_to_none=True)

    def _check_finite(self, first_bad_step, epoch):
        if self.on_nonfinite == "skip":
            return
        bad_step = int(first_bad_step)
        if bad_step >= 0:
            raise ConfigError(
                f"the training loss became NaN/Inf in epoch {epoch} at step {bad_step}. Training "
                "stopped; the last checkpoint and model_best.pth are from before. Lower the "
                "learning rate, enable trainer.clip_grad_norm, or set trainer.on_nonfinite to \"skip\"."
            )

    def _epoch_batches(self, epoch, skip):
        """Yield (batch_idx, batch) for this epoch, starting after `skip` batches. The order
        depends only on the seed and the position, which makes a resumed epoch identical."""
        if self.iteration_based:  # epochs of len_epoch batches cut from one endless stream
            data_pass, offset = divmod((epoch - 1) * self.len_epoch + skip, self.batches_per_pass)
        else:
            data_pass, offset = epoch, skip
        batch_idx = skip
        while batch_idx < self.len_epoch:
            for batch in self._loader_from(data_pass, offset):
                yield batch_idx, batch
                batch_idx += 1
                if batch_idx == self.len_epoch:
                    return
            data_pass, offset = data_pass + 1, 0

    def _loader_from(self, data_pass, offset):
        if hasattr(self.data_loader, "set_epoch"):
            self.data_loader.set_epoch(data_pass, offset)
            return self.data_loader
        sampler = getattr(self.data_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
            sampler.set_epoch(data_pass)
        iterator = iter(self.data_loader)
        for _ in range(offset):
            next(iterator)
        return iterator

    def _to_device(self, data):
        data = data.to(self.device, non_blocking=self.non_blocking)
        if self.channels_last and data.dim() == 4:
            data = data.contiguous(memory_format=torch.channels_last)
        return data

    def _update_metrics(self, tracker, loss, output, target):
        n = target.size(0)
        tracker.update("loss", loss, n)
        for metric in self.metric_ftns:
            tracker.update(metric.__name__, metric(output, target), n)

    def _log_step(self, epoch, batch_idx, data, progress):
        step = (epoch - 1) * self.len_epoch + batch_idx
        loss = self.train_metrics.avg("loss")
        self.writer.add_scalar("train_step/loss", loss, step)
        progress.set_postfix(loss=f"{loss:.4f}")
        if not self.show_progress:
            self.logger.debug(f"Train Epoch: {epoch} {self._progress(batch_idx)} Loss: {loss:.6f}")
        if batch_idx == 0 and self.writer.enabled and epoch % self.image_period == 0 and data.dim() == 4:
            self.writer.add_image("input", make_grid(data[:64].float().cpu(), nrow=8, normalize=True), epoch)

    def _progress(self, batch_idx):
        return f"[{batch_idx + 1}/{self.len_epoch} ({100.0 * (batch_idx + 1) / self.len_epoch:.0f}%)]"

    def _learning_rates(self):
        groups = self.optimizer.param_groups
        rates = {"lr": groups[0]["lr"]}
        rates.update({f"lr_group{i}": g["lr"] for i, g in enumerate(groups) if i > 0})
        return rates

    def _step_scheduler(self, log):
        if self.lr_scheduler is None:
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = self.monitor_metric or "val_loss"
            if metric not in log:
                raise ConfigError(f"lr_scheduler is ReduceLROnPlateau, which steps on '{metric}', "
                                  "but that is not logged. Set trainer.monitor to a logged metric.")
            self.lr_scheduler.step(log[metric])
        else:
            self.lr_scheduler.step()

    # ---- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def _valid_epoch(self, epoch):
        self.model.eval()
        self.valid_metrics.reset()
        for data, target in self.valid_data_loader:
            data, target = self._to_device(data), target.to(self.device, non_blocking=self.non_blocking)
            with self.autocast():
                output = self.model(data)
                loss = self.criterion(output, target)
            self._update_metrics(self.valid_metrics, loss, output, target)
        if self.writer.enabled and epoch % self.histogram_period == 0:
            for name, param in self.model.named_parameters():
                self.writer.add_histogram(f"params/{name}", param.detach().float().cpu(), epoch)
        return self.valid_metrics.result()

    # ---- checkpoint extras -------------------------------------------------------------------
    def _extra_checkpoint_state(self):
        return {"grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "train_metrics": self.train_metrics.state()}

    def _load_extra_checkpoint_state(self, checkpoint):
        if checkpoint.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["grad_scaler"])
        if checkpoint.get("batches_done") and checkpoint.get("train_metrics"):
            self.train_metrics.load_state(checkpoint["train_metrics"])
