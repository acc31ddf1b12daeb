"""matplotlib figures of the evaluation report: confusion matrix, wrong samples, ROC and PR."""
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def roc_figure(fpr, tpr, auc):
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return fig


def pr_figure(precision, recall, average_precision, best):
    """`best`: {"threshold", "precision", "recall", "f1"} of the F1-maximising threshold."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"PR (average precision = {average_precision:.4f})")
    ax.scatter([best["recall"]], [best["precision"]], color="red", zorder=3,
               label=f"best F1 {best['f1']:.4f} at threshold {best['threshold']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    return fig
