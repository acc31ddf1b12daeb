"""Activation statistics (mean and std of each leaf module's output) written to the experiment
writer every `every` training forward passes; the step is the number of training passes done
(the callback that owns it saves the count in checkpoints). Reading the numbers waits for the device, hence
the bounded frequency; between records the hooks only test a flag."""
import torch


class ActivationStats:
    def __init__(self, model, writer, every):
        self.writer = writer
        self.every = every
        self.forward_count = 0
        self.recording = False
        self.handles = [model.register_forward_pre_hook(self._before_forward)]
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):  # leaves only
                self.handles.append(module.register_forward_hook(self._recorder(name)))

    def _before_forward(self, model, inputs):
        self.recording = model.training and self.forward_count % self.every == 0
        if model.training:
            self.forward_count += 1

    def _recorder(self, name):
        def record(module, inputs, output):
            if not self.recording or not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            values = output.detach().float()
            step = self.forward_count
            self.writer.add_scalar(f"activations/{name}/mean", values.mean().item(), step)
            self.writer.add_scalar(f"activations/{name}/std", values.std().item() if values.numel() > 1 else 0.0,
                                   step)
        return record

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []
