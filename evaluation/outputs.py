"""What a model says about a batch of a class task (classification, binary, multi-label; the
task comes from the run, see data_loader/task.py): probabilities, predicted labels and how
confident they are. Shared by test.py's report and predict.py."""
import torch

DEFAULT_THRESHOLD = 0.5


def output_names(task, count):
    """The task's class, label or target names when there are `count` of them, else "0", "1", ..."""
    if task is not None and len(task.names) == count:
        return [str(name) for name in task.names]
    return [str(i) for i in range(count)]


def probabilities(output, task):
    """Class (or label) probabilities. Raw scores and log-probabilities are normalised; an
    output that already holds probabilities is kept as it is."""
    output = output.float()
    if task == "classification":  # torch.where, not an if: deciding on the device needs no sync
        looks_normalised = (output >= 0).all() & ((output.sum(1) - 1).abs() < 1e-3).all()
        return torch.where(looks_normalised, output, torch.softmax(output, dim=1))
    output = output.reshape(output.shape[0], -1)
    return torch.where(((output >= 0) & (output <= 1)).all(), output, torch.sigmoid(output))


def predict_labels(probs, task, threshold=DEFAULT_THRESHOLD):
    """(labels, confidence of each prediction). Binary: labels 0/1 per sample; multi-label:
    0/1 per label; classification: the argmax class."""
    if task == "classification":
        confidence, labels = probs.max(dim=1)
        return labels, confidence
    labels = (probs > threshold).long()
    confidence = torch.where(labels.bool(), probs, 1 - probs)
    if task == "binary":
        return labels.squeeze(1), confidence.squeeze(1)
    return labels, confidence


class WrongSamples:
    """The `k` most confidently wrong samples seen so far, inputs included. Everything stays
    on the device (topk over the kept and the new samples), so updating never waits for it."""

    def __init__(self, k, task, threshold=DEFAULT_THRESHOLD):
        self.k, self.task, self.threshold = k, task, threshold
        self.kept = None

    def update(self, data, output, target, first_index):
        labels, confidence = predict_labels(probabilities(output, self.task), self.task, self.threshold)
        target = target.reshape(labels.shape).long()
        wrong = labels != target if self.task != "multilabel" else (labels != target).any(dim=1)
        if self.task == "multilabel":
            confidence = torch.where(labels != target, confidence, 0).amax(dim=1)
        candidates = {"score": torch.where(wrong, confidence, -1.0), "input": data, "predicted": labels,
                      "target": target,
                      "index": torch.arange(first_index, first_index + len(target), device=target.device)}
        if self.kept is not None:
            candidates = {key: torch.cat([self.kept[key], value]) for key, value in candidates.items()}
        top = candidates["score"].topk(min(self.k, len(candidates["score"]))).indices
        self.kept = {key: value[top] for key, value in candidates.items()}

    def result(self):
        """{"score", "input", "predicted", "target", "index"} on the CPU, wrong samples only,
        most confident first."""
        if self.kept is None:
            return None
        wrong = self.kept["score"] >= 0
        return {key: value[wrong].cpu() for key, value in self.kept.items()}
