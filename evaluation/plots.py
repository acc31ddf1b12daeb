"""matplotlib figures of the evaluation report: confusion matrix, wrong samples, ROC and PR, and for
regression predicted vs true values and residuals."""
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def save_figure(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_figure(matrix, class_names):
    """Counts, with rows = true class and columns = predicted class; colour by row share."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({int(matrix.sum())} samples)")
    if n <= 30:
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, int(count), ha="center", va="center", fontsize=8,
                    color="white" if row_share[row, col] > 0.5 else "black")
    return fig


def wrong_samples_figure(images, titles, columns=4):
    """A grid of input images, each titled with its true and predicted class."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        image = np.asarray(image, dtype=np.float32)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)  # undo normalisation
        if image.shape[0] in (1, 3):
            image = image.transpose(1, 2, 0)
        ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
        ax.set_title(title, fontsize=8)
    fig.suptitle("Most confidently wrong test samples")
    return fig


def _unit_square(ax):
    """Axes from 0 to 1 with a margin, so a curve along an edge is not hidden by the frame."""
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")


def roc_figure(fpr, tpr, auc, positive):
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.plot(fpr, tpr, linewidth=2, label=f"ROC (AUC = {auc:.4f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC curve, positive class '{positive}'")
    _unit_square(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def pr_figure(precision, recall, average_precision, best, positive, positive_share):
    """`best`: {"threshold", "precision", "recall", "f1"} of the F1-maximising threshold;
    `positive_share`: the precision of a classifier that guesses (the positives' share)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.axhline(positive_share, linestyle="--", color="grey", label=f"chance ({positive_share:.2f})")
    ax.plot(recall, precision, linewidth=2, label=f"PR (average precision = {average_precision:.4f})")
    ax.scatter([best["recall"]], [best["precision"]], color="red", zorder=3,
               label=f"best F1 {best['f1']:.4f} at threshold {best['threshold']:.3f}")
    ax.set(xlabel=f"recall of '{positive}'", ylabel=f"precision of '{positive}'",
           title=f"Precision-recall curve, positive class '{positive}'")
    _unit_square(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return fig


def predicted_vs_true_figure(predicted, true, names, r2):
    """One panel per target: predicted against true values, the diagonal of a perfect model."""
    count = len(names)
    fig, axes = plt.subplots(1, count, figsize=(4.6 * count, 4.6), squeeze=False, layout="constrained")
    for ax, column, name in zip(axes.flat, range(count), names):
        low = float(min(true[:, column].min(), predicted[:, column].min()))
        high = float(max(true[:, column].max(), predicted[:, column].max()))
        pad = 0.04 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], "--", color="grey", label="predicted = true")
        ax.scatter(true[:, column], predicted[:, column], s=12, alpha=0.6, label=f"R\u00b2 = {r2[column]:.3f}")
        ax.set(xlim=(low - pad, high + pad), ylim=(low - pad, high + pad), xlabel=f"true {name}",
               ylabel=f"predicted {name}", title=f"{name}: predicted vs true ({len(true)} samples)")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return fig


def residuals_figure(predicted, true, names):
    """Per target: residual (true - predicted) against the prediction, and the residuals' histogram."""
    count = len(names)
    fig, axes = plt.subplots(count, 2, figsize=(10, 3.6 * count), squeeze=False, layout="constrained")
    for row, name in enumerate(names):
        residual = true[:, row] - predicted[:, row]
        scatter, histogram = axes[row]
        scatter.axhline(0, color="grey", linestyle="--")
        scatter.scatter(predicted[:, row], residual, s=12, alpha=0.6)
        scatter.set(xlabel=f"predicted {name}", ylabel="residual (true - predicted)", title=f"{name}: residuals")
        scatter.grid(alpha=0.3)
        histogram.hist(residual, bins=min(40, max(10, len(residual) // 8)), color="tab:blue", alpha=0.8)
        histogram.axvline(0, color="grey", linestyle="--")
        histogram.set(xlabel="residual (true - predicted)", ylabel="samples",
                      title=f"{name}: residual histogram (mean {residual.mean():.3g}, std {residual.std():.3g})")
        histogram.yaxis.set_major_locator(MaxNLocator(integer=True))
        histogram.grid(alpha=0.3)
    return fig
