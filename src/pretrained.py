"""Checkpoints shipped with the repository (``pretrained/``): find, verify, load and pack them.

Each shipped checkpoint ``pretrained/<name>.ckpt`` (network weights only, no optimizer state)
has a manifest ``pretrained/<name>.json`` beside it: the config that builds its network, the data
it was trained on, its steps, minutes and CPU, its held-out metrics beside the baselines, and the
SHA-256 of the checkpoint file. :func:`src.checkpoint.read_checkpoint` verifies that checksum
whenever it reads a checkpoint with a manifest beside it, so ``eval.py --ckpt_file
pretrained/<name>.ckpt``, ``export.py`` and ``mindspore_hub_conf.create_network(name,
pretrained=True)`` all refuse a damaged or replaced file.

``python -m src.pretrained list`` prints the shipped checkpoints with their results;
``python -m src.pretrained pack --run_dir RUN --name NAME --config CONFIG --eval_dir EVAL``
turns a finished training run (its ``best.ckpt``, ``loss_history.jsonl``,
``learning_curve.jsonl`` and an ``eval.py`` result) into a shipped checkpoint and its manifest;
``python -m src.pretrained average --config CONFIG --out FILE CKPT ...`` writes the mean weights of
several checkpoints of a run (to evaluate, then pack with ``--ckpt FILE``).
"""
import json
import os
import subprocess

from src.manifest import load_manifest
from src.model_utils.config import REPO_ROOT
from src.model_utils.errors import ArgumentParser, UserError, atomic_write_text, exit_on_user_error

PRETRAINED_DIR = os.path.join(REPO_ROOT, "pretrained")
# the checkpoint create_network(model_name, pretrained=True) loads for each model family
DEFAULT_PRETRAINED = {"convlstm": "convlstm_mmnist_cpu"}
METRIC_KEYS = ("mse", "mae", "ssim", "ssim_openstl", "psnr", "cross_entropy", "mse_per_frame",
               "ssim_per_frame")


def manifest_path(name, folder=PRETRAINED_DIR):
    return os.path.join(folder, name + ".json")


def shipped_names(folder=PRETRAINED_DIR):
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json")) \
        if os.path.isdir(folder) else []


def read_manifest(name, folder=PRETRAINED_DIR):
    """The manifest of a shipped checkpoint; one-line error naming the available ones."""
    path = manifest_path(name, folder)
    if not os.path.isfile(path):
        raise UserError(f"no shipped checkpoint '{name}' in {folder}: choose one of "
                        f"{', '.join(shipped_names(folder)) or '(none)'}")
    manifest = load_manifest(path)
    if manifest is None:
        raise UserError(f"{path}: not a checkpoint manifest (JSON with ckpt_file and sha256), damaged or "
                        "replaced: restore it (git checkout -- pretrained/)")
    return manifest


def pretrained_files(name, folder=PRETRAINED_DIR):
    """``(checkpoint path, config path, manifest)`` of a shipped checkpoint."""
    manifest = read_manifest(name, folder)
    return (os.path.join(folder, manifest["ckpt_file"]),
            os.path.join(REPO_ROOT, manifest["config"]), manifest)


def load_pretrained(name, argv=(), folder=PRETRAINED_DIR):
    """Build the network of a shipped checkpoint from its config and load it (checksum verified,
    strict shapes). ``argv``: more config overrides (``["--device_target", "GPU"]``). Native
    MindSpore ops only (no CPU tuning), so the network runs and exports on any device.
    Returns ``(net, manifest)``, the network in inference mode."""
    from src.checkpoint import load_network
    from src.model_utils.config import get_config
    ckpt, config, manifest = pretrained_files(name, folder)
    cfg = get_config(["--config_path", config, *argv])
    net, _ = load_network(cfg, ckpt, export=True)
    return net, manifest


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except OSError:
        return None


def network_names(config, ckpt_params, ckpt):
    """The parameter names of the network ``config`` builds; one-line error when the checkpoint
    ``ckpt`` (its ``ckpt_params``) lacks one of them."""
    from src.model_utils.config import get_config
    from src.models import create_model_from_config
    network = create_model_from_config(get_config(["--config_path", config]), export=True)
    names = sorted(network.parameters_dict())
    missing = [name for name in names if name not in ckpt_params]
    if missing:
        raise UserError(f"{ckpt} lacks parameters of the network of {config} "
                        f"({missing[0]}): pass the config the run was trained with")
    return names


def average(ckpts, config, out):
    """Write ``out``: the mean of the network weights of ``ckpts`` (checkpoints of one run, e.g.
    every tenth epoch of a low learning-rate phase), with the model name, the last epoch and the
    averaged files' names and epochs (``averaged_from``), which ``pack`` copies into the manifest.
    Evaluate it with ``eval.py --ckpt_file OUT``, then ``pack --ckpt OUT``."""
    import mindspore as ms
    from src.checkpoint import average_weights, checkpoint_epoch, read_checkpoint, save_checkpoint_atomic
    loaded = [(path, read_checkpoint(path)) for path in ckpts]  # each file read once
    first = loaded[0][1]
    names = network_names(config, first, ckpts[0])
    epochs = [checkpoint_epoch(params) for _, params in loaded]
    weights = average_weights(loaded, names)
    sources = [f"{os.path.basename(path)} (epoch {epoch})" for path, epoch in zip(ckpts, epochs)]
    save_checkpoint_atomic([{"name": name, "data": ms.Tensor(weights[name])} for name in names], out,
                           append_dict={"model_name": first["model_name"], "epoch_num": max(epochs),
                                        "averaged_from": json.dumps(sources)})
    return out, sources


def pack(run_dir, name, config, eval_dir, data, ckpt=None, folder=PRETRAINED_DIR, continues=None,
         note="", commit=None):
    """Write ``pretrained/<name>.ckpt`` (the run's network weights and model name, no optimizer
    state) and its manifest from a finished run and an ``eval.py`` result on held-out data.

    ``continues``: the manifest (a path) of the checkpoint the run started from (``--pre_trained``):
    the steps and minutes count both, and ``training.stages`` lists each stage's own. ``commit``:
    the commit the run trained from (default: this checkout's)."""
    import mindspore as ms
    from src.checkpoint import file_sha256, read_checkpoint, stored_meta
    from src.kernels.tuning import machine_info
    ckpt = ckpt or os.path.join(run_dir, "best.ckpt")
    params = read_checkpoint(ckpt)
    names = network_names(config, params, ckpt)
    with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    from src.visualize import read_run_records
    history, curve = read_run_records(run_dir)
    if not history or not curve:
        raise UserError(f"{run_dir} lacks loss_history.jsonl or learning_curve.jsonl: pass the "
                        "output folder of a training run that validated (eval_interval > 0)")
    stages = []  # of the checkpoint the run continued, oldest first
    if continues:
        if not os.path.isfile(continues):
            raise UserError(f"--continues {continues}: no such manifest (the .json beside the "
                            "checkpoint the run started from)")
        with open(continues, encoding="utf-8") as f:
            before = json.load(f).get("training")
        if not isinstance(before, dict) or "steps" not in before:
            raise UserError(f"--continues {continues}: not a shipped checkpoint's manifest (no training steps)")
        stages = before.get("stages") or [{k: before[k] for k in ("steps", "minutes", "cpu", "commit", "note")
                                           if k in before}]
    weights = [{"name": k, "data": params[k]} for k in names]
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, name + ".ckpt")
    ms.save_checkpoint(weights, out, append_dict={"model_name": params["model_name"]}, crc_check=True)
    os.chmod(out, 0o644)  # MindSpore writes checkpoints read-only for the owner
    machine = machine_info()
    best_epoch = int(params["epoch_num"].asnumpy()) if "epoch_num" in params else None
    best_step = max((r["global_step"] for r in history if r["epoch"] == best_epoch), default=None)
    stage = {"steps": history[-1]["global_step"], "minutes": curve[-1]["minutes"],
             "cpu": f"{machine['cpu']}, {machine['cores']} cores", "commit": commit or _git_commit(),
             **({"note": note} if note else {})}
    averaged = stored_meta(params).get("averaged_from")
    if averaged:
        stage["averaged_from"] = json.loads(averaged)
    stages.append(stage)
    manifest = {
        "name": name,
        "ckpt_file": os.path.basename(out),
        "sha256": file_sha256(out),
        "size_bytes": os.path.getsize(out),
        "model_name": params["model_name"],
        "config": os.path.relpath(os.path.abspath(config), REPO_ROOT),
        "data": data,
        "training": {
            "steps": sum(s["steps"] for s in stages),
            "minutes": sum(s["minutes"] for s in stages),
            "best_epoch": best_epoch,
            "best_step": best_step,  # of the last stage
            "cpu": stage["cpu"],
            "commit": stage["commit"],
            **({"note": note} if note else {}),
            **({"averaged_from": stage["averaged_from"]} if averaged else {}),
            **({"stages": stages} if len(stages) > 1 else {}),
        },
        "held_out": {
            "sequences": metrics["num_samples"],
            **{k: {m: metrics[k][m] for m in METRIC_KEYS if m in metrics[k]}
               for k in ("model", "blank_frames", "copy_last_frame") if k in metrics},
            "mse_vs_blank": metrics["model"]["mse"] / metrics["blank_frames"]["mse"],
        },
    }
    atomic_write_text(manifest_path(name, folder), json.dumps(manifest, indent=2) + "\n")
    return out, manifest


def describe(manifest):
    """Two lines on a shipped checkpoint: what it is and what it scores on held-out data."""
    held, train = manifest["held_out"], manifest["training"]
    model, blank = held["model"], held["blank_frames"]
    stages = train.get("stages") or [train]
    cpus = list(dict.fromkeys(stage["cpu"] for stage in stages))  # each machine once, in order
    where = (f" in {len(stages)} stages" if len(stages) > 1 else "") + f" on {' then '.join(cpus)}"
    return (f"{manifest['name']}: {manifest['model_name']} ({manifest['config']}), "
            f"{train['steps']} steps in {train['minutes']:.0f} min{where}\n"
            f"  held-out ({held['sequences']} sequences): MSE {model['mse']:.2f} "
            f"({held['mse_vs_blank']:.3f} x blank {blank['mse']:.2f}), SSIM {model['ssim']:.4f} "
            f"(blank {blank['ssim']:.4f})")


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(prog="python -m src.pretrained",
                            description="list the shipped checkpoints, pack a training run into one, or average "
                                        "checkpoints of a run")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped checkpoints and their held-out results")
    p = sub.add_parser("pack", help="a finished run -> pretrained/<name>.ckpt + manifest")
    p.add_argument("--run_dir", required=True, help="the training run's output_dir")
    p.add_argument("--name", required=True, help="file name stem under pretrained/")
    p.add_argument("--config", required=True, help="the config the run was trained with")
    p.add_argument("--eval_dir", required=True, help="eval.py's --result_dir for the checkpoint")
    p.add_argument("--ckpt", default=None, help="checkpoint to ship (default RUN/best.ckpt)")
    p.add_argument("--data", default="", help="one line: the data the run trained on")
    p.add_argument("--continues", default=None,
                   help="manifest of the checkpoint the run started from (--pre_trained): "
                        "steps and minutes add up, each stage listed")
    p.add_argument("--note", default="", help="one line about the run (e.g. what else the machine ran)")
    p.add_argument("--commit", default=None, help="the commit the run trained from (default: this checkout's)")
    p = sub.add_parser("average", help="checkpoints of one run -> one checkpoint of their mean weights")
    p.add_argument("ckpts", nargs="+", help="the .ckpt files to average (one run's)")
    p.add_argument("--config", required=True, help="the config the run was trained with")
    p.add_argument("--out", required=True, help="the checkpoint to write")
    args = parser.parse_args(argv)
    if args.command != "list":  # an entry point: the oneDNN ISA before MindSpore loads (src.entry)
        from src.kernels.tuning import apply_onednn_isa
        apply_onednn_isa(log=None, conv_impl="native")
    if args.command == "average":
        out, sources = average(args.ckpts, args.config, args.out)
        print(f"wrote {out}: the mean weights of {len(sources)} checkpoints ({', '.join(sources)})")
        return 0
    if args.command == "list":
        for name in shipped_names():
            print(describe(read_manifest(name)))
        return 0
    out, manifest = pack(args.run_dir, args.name, args.config, args.eval_dir, args.data, args.ckpt,
                         continues=args.continues, note=args.note, commit=args.commit)
    print(f"wrote {out} and {manifest_path(args.name)}")
    print(describe(manifest))
    return 0


if __name__ == "__main__":
    main()
