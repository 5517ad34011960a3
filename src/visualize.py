"""Pictures: ConvLSTM input / ground-truth / prediction strips, loss curves and learning curves
(PNG, matplotlib)."""
import json
import os

import numpy as np

from src.model_utils.errors import writing


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_sequence_strip(path, inputs, target, prediction):
    """One PNG with three rows: input frames, ground truth, prediction. Arrays (T, C, H, W) in [0,1]."""
    plt = _pyplot()
    rows = (("input", inputs), ("ground truth", target), ("prediction", prediction))
    cols = max(len(inputs), len(target))
    fig, axes = plt.subplots(3, cols, figsize=(cols * 1.1, 3.6), squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(np.clip(frames[c][0], 0, 1), cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with writing(path, partial=[path]):
        fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def read_loss_history(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_run_records(run_dir):
    """(loss history, learning curve) of a training output folder: the records of its
    ``loss_history.jsonl`` (one per logged step) and ``learning_curve.jsonl`` (one per validation),
    each [] when the file is missing."""
    def records(name):
        path = os.path.join(run_dir, name)
        return read_loss_history(path) if os.path.isfile(path) else []
    return records("loss_history.jsonl"), records("learning_curve.jsonl")


def save_loss_curve(history_file, path, title="training loss"):
    """Plot per-step loss (and its running mean) from a ``loss_history.jsonl`` written by training."""
    plt = _pyplot()
    records = read_loss_history(history_file)
    if not records:
        raise ValueError(f"{history_file} holds no loss records")
    steps = np.array([r["global_step"] for r in records])
    losses = np.array([r["loss"] for r in records])
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, alpha=0.35, label="per step")
    ax.plot(steps[window - 1:], smooth, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with writing(path, partial=[path]):
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


LEARNING_CURVE_METRICS = (("mse", "MSE per frame (lower is better)"),
                          ("ssim", "SSIM (higher is better)"))
BASELINES = (("copy_last_frame", "copy last frame", "tab:orange"),
             ("blank_frames", "blank frames", "tab:green"))


def _save_metric_panels(fig, axes, xlabel, title, path):
    """Label the MSE / SSIM panels (:data:`LEARNING_CURVE_METRICS`), title and write the PNG."""
    plt = _pyplot()
    for ax, (_, label) in zip(axes, LEARNING_CURVE_METRICS):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with writing(path, partial=[path]):
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_frame_metrics(path, result, title="held-out sequences: metrics per predicted frame"):
    """One PNG, two panels: MSE and SSIM of each predicted frame for the model and the baselines
    present in ``result`` (an evaluation result: ``{"model": {"mse_per_frame", "ssim_per_frame"},
    "copy_last_frame": {...}, "blank_frames": {...}}``), so a reader sees where the prediction
    fades and from which frame on a baseline would do as well."""
    plt = _pyplot()
    lines = (("model", "model", "tab:blue"),) + BASELINES
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (key, _) in zip(axes, LEARNING_CURVE_METRICS):
        for name, legend, colour in lines:
            if name in result:
                values = result[name][key + "_per_frame"]
                style = "o-" if name == "model" else "--"
                ax.plot(range(1, len(values) + 1), values, style, color=colour, label=legend)
    return _save_metric_panels(fig, axes, "predicted frame", title, path)


def save_learning_curve(records_file, path, title="ConvLSTM on held-out sequences"):
    """One PNG, two panels (MSE and SSIM) against minutes of training, from a JSON-lines file of
    evaluation records ``{"epoch", "minutes", "mse", "ssim", "copy_last_frame": {"mse", "ssim",
    ...}, "blank_frames": {...}}`` (what training writes to ``learning_curve.jsonl``). The two
    baselines are drawn as horizontal lines (their values from the last record: they do not
    depend on the model), so the reader sees when the model beats them."""
    plt = _pyplot()
    records = read_loss_history(records_file)
    if not records:
        raise ValueError(f"{records_file} holds no evaluation records")
    minutes = [r["minutes"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (key, _) in zip(axes, LEARNING_CURVE_METRICS):
        ax.plot(minutes, [r[key] for r in records], "o-", color="tab:blue", label="model")
        for base, name, colour in BASELINES:
            if base in records[-1]:
                ax.axhline(records[-1][base][key], linestyle="--", color=colour, label=name)
    return _save_metric_panels(fig, axes, "minutes of training", title, path)
