"""Last step of ``scripts/run_demo.sh``: loss curves (PNG) and a summary of what the demo made.

``python -m src.demo --out_dir DEMO_OUTPUT`` reads the runs' ``loss_history.jsonl``,
``eval/metrics.json`` and the CPU inference ``acc.log`` files, draws the loss curves and prints
where everything is with the accuracy / MSE reached (beside the copy-last-frame baseline), and
puts the demo's minutes-trained ConvLSTM beside the shipped hours-trained checkpoint
(``convlstm_pretrained/eval``) on the same held-out sequences.
"""
import json
import os

from src.model_utils.errors import ArgumentParser, exit_on_user_error
from src.visualize import read_run_records, save_loss_curve

RUNS = (("tinydarknet_digits", "Tiny-DarkNet on 1,000 held-out real MNIST digits (CIFAR-10 format)"),
        ("convlstm_mmnist", "ConvLSTM on held-out Moving MNIST sequences (other digits)"))


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summarize(out_dir):
    """Draw the loss curves and return the summary lines."""
    lines = [f"demo outputs in {out_dir}:"]
    for name, title in RUNS:
        run = os.path.join(out_dir, name)
        if not os.path.isdir(run):
            lines.append(f"  {name}: missing ({run})")
            continue
        curve = save_loss_curve(os.path.join(run, "loss_history.jsonl"),
                                os.path.join(run, "loss_curve.png"), title=f"{name} training loss")
        metrics = _read_json(os.path.join(run, "eval", "metrics.json"))
        lines.append(f"  {title}")
        if "top_1_accuracy" in metrics:
            lines.append(f"    eval.py: top-1 {metrics['top_1_accuracy']:.4f}, top-5 "
                         f"{metrics['top_5_accuracy']:.4f} on {metrics['num_samples']} images")
        else:
            m, b, z = metrics["model"], metrics["copy_last_frame"], metrics["blank_frames"]
            lines.append(f"    eval.py: MSE/frame {m['mse']:.2f} (copy-last-frame {b['mse']:.2f}, "
                         f"blank frames {z['mse']:.2f}); SSIM {m['ssim']:.4f} (copy-last-frame "
                         f"{b['ssim']:.4f}, blank frames {z['ssim']:.4f}) on "
                         f"{metrics['num_samples']} sequences")
            lines.append(f"    frame strips: {', '.join(metrics.get('pictures', []))}")
            learning_curve = os.path.join(run, "learning_curve.png")
            if os.path.isfile(learning_curve):
                lines.append(f"    learning curve (validation MSE / SSIM): {learning_curve}")
        acc_log = os.path.join(run, "infer", "acc.log")
        if os.path.isfile(acc_log):
            with open(acc_log, encoding="utf-8") as f:
                result = [l.strip() for l in f if l.strip()]
            lines.append(f"    CPU MindIR inference pipeline (acc.log): {' | '.join(result[:3])}")
        lines.append(f"    loss curve: {curve}")
        lines.append(f"    checkpoints: {os.path.join(run, 'checkpoints')}")
    return lines


def _training_effort(run):
    """(steps, minutes) of a run folder, from its loss history and learning curve (None if absent)."""
    history, curve = read_run_records(run)
    return (history[-1]["global_step"] if history else None), (curve[-1]["minutes"] if curve else None)


def compare_convlstm(out_dir):
    """Lines of the side-by-side table: the demo's ConvLSTM (minutes of training) and the shipped
    checkpoint (hours), each beside the baselines, on the same held-out sequences; [] when
    either evaluation is missing."""
    demo = os.path.join(out_dir, "convlstm_mmnist")
    shipped = os.path.join(out_dir, "convlstm_pretrained", "eval", "metrics.json")
    demo_metrics = os.path.join(demo, "eval", "metrics.json")
    if not (os.path.isfile(shipped) and os.path.isfile(demo_metrics)):
        return []
    demo_result, shipped_result = _read_json(demo_metrics), _read_json(shipped)
    steps, minutes = _training_effort(demo)
    from src.pretrained import DEFAULT_PRETRAINED, read_manifest
    training = read_manifest(DEFAULT_PRETRAINED["convlstm"])["training"]
    blank = demo_result["blank_frames"]
    rows = [("this demo's model", steps, minutes, demo_result["model"]),
            ("shipped checkpoint", training["steps"], training["minutes"], shipped_result["model"]),
            ("blank frames", None, None, blank),
            ("copy last frame", None, None, demo_result["copy_last_frame"])]
    lines = [f"  ConvLSTM: minutes against hours of training, {demo_result['num_samples']} held-out "
             "sequences", f"    {'':20s}{'steps':>8s}{'minutes':>9s}{'MSE':>9s}{'x blank':>9s}"
             f"{'SSIM':>8s}"]
    for name, n, m, r in rows:
        lines.append(f"    {name:20s}{'' if n is None else n:>8}{'' if m is None else f'{m:.1f}':>9s}"
                     f"{r['mse']:9.2f}{r['mse'] / blank['mse']:9.3f}{r['ssim']:8.4f}")
    for name, result in (("demo", demo_result), ("shipped", shipped_result)):
        pictures = result.get("pictures", []) + [result.get("frame_metrics_plot", "")]
        lines.append(f"    {name} strips and per-frame plot: {', '.join(p for p in pictures if p)}")
    return lines


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description="summarise a demo run and draw its loss curves")
    parser.add_argument("--out_dir", required=True, help="the demo output folder")
    args = parser.parse_args(argv)
    out_dir = os.path.abspath(args.out_dir)
    print("\n".join(summarize(out_dir) + compare_convlstm(out_dir)))


if __name__ == "__main__":
    main()
