"""darknet ``.weights`` for ``cfg/tiny.cfg`` <-> MindSpore checkpoint of this repo's Tiny-DarkNet.

    python -m src.darknet_weights to-ckpt tiny.weights tinydarknet_imagenet.ckpt \\
        [--num_classes 1000] [--class_names FILE] [--raw]
    python -m src.darknet_weights to-darknet CKPT out.weights [--raw]
    python -m src.darknet_weights check tiny.weights [--num_classes 1000] [--image_size 224]

**File format** (darknet ``src/parser.c``, ``load_weights_upto`` / ``save_weights_upto``), all
little-endian: major, minor, revision as int32, then ``seen`` (images trained on) as int64 when
``major * 10 + minor >= 2``, else as int32. Then, per convolution in cfg order: biases (the BN beta
when the layer is batch-normalised), for BN layers scales (gamma), rolling mean, rolling variance,
then the weights in (out, in, kh, kw) order, all float32. tiny.cfg has 16 convolutions: 1-15 with
BN (``features.<i>.conv.weight``, ``features.<i>.bn.{beta,gamma,moving_mean,moving_variance}``
here, i counting the max-pools too), the 16th (the classifier) with a bias and no BN
(``classifier.weight``, ``classifier.bias``). Nothing else is stored. ``to-darknet`` writes the
header 0, 2, 0 and a 64-bit ``seen`` (the value read by ``to-ckpt``, kept in the checkpoint as
``darknet_seen``; 0 for a checkpoint trained here).

**BatchNorm epsilon: values kept as they are.** darknet's CPU code normalises with
``sqrt(var) + 1e-6`` (``normalize_cpu``). Its GPU code trains through cuDNN's batch-norm kernel
with epsilon 1e-5, i.e. ``sqrt(var + 1e-5)``: MindSpore's ``sqrt(var + eps)`` with this
network's eps 1e-5 (darknet's own GPU inference kernel, ``normalize_kernel``, uses that formula
in some darknet versions and the CPU one in others). The published ImageNet weights were trained
on GPUs, so gamma, beta and the rolling statistics are copied unchanged: the BN conversion is
exactly invertible and the network computes the formula the weights were trained with (the
"GPU formula" below). The CPU formula gives ``sqrt(v + 1e-5) / (sqrt(v) + 1e-6)`` times this
network's normalised value: 1.0000 for variances above ~0.1, 9.2 at v = 1e-7. Measured on
hand-made 1000-class files whose rolling statistics are the true statistics of random images
(224x224, 2 random images, ``--raw``, i.e. no input folding): max |logit difference| 3e-6 to a
numpy float64 reference of darknet's GPU formula (float32 rounding), 6e-4 to its CPU formula with
variances 0.12-1.5, and 3.4 (logits up to 2) when two channels per layer have variance ~1e-7.
``check`` prints a real file's range of variances and these differences.

**Input scaling: folded into convolution 1 (unless ``--raw``).** darknet feeds RGB in [0, 1];
this repo's ImageNet / ImageFolder pipelines feed (x - mean) / std with the ImageNet mean and std
(``src/data/classification.py``). Since x01 = std * x + mean, convolution 1 becomes
``W * std[c]`` and its BN rolling mean ``mean - sum(W * mean[c])``: the same function except on
the one-pixel zero padding of convolution 1 (zero here is the mean colour, in darknet black).
Measured as above with the default conversion: 3e-6 to darknet's GPU formula with conv 1 padded
by the mean colour (the fold itself is exact to float32 rounding), 0.09-0.11 (logits up to
1.4-1.9) to darknet as it pads, black; on these random networks, whose logits lie close
together, that changed the top-1 class of 1 of 4 noise images. How much it moves a trained
network on photos could not be measured here (no real file); ``check`` measures it on one.
Folding is float32 arithmetic, not invertible bit for bit, so ``to-ckpt`` also stores the two
original tensors under the ``darknet_raw.`` prefix (eval, export and ``--pre_trained`` load only
the network's own names); ``to-darknet`` writes them back when the checkpoint still holds exactly
what they fold to, so darknet -> checkpoint -> darknet and checkpoint -> darknet -> checkpoint
are bit-exact. A checkpoint trained here (no originals) is unfolded in float64: conv 1 and its
rolling mean come back to float32 rounding, every other value bit-exact. ``--raw`` copies every
value unchanged in both directions (a bijection; the network then expects darknet's [0, 1] input).

**Class names.** The checkpoint stores ``model_name`` and ``class_names`` (a JSON list) as
train.py does. For 1000 classes: the ImageNet synset ids in darknet's label order
(``src/data/imagenet_darknet_labels.txt``), so eval.py labels ``val/<wnid>/`` folders the way
darknet does, and ``--pre_trained`` keeps the head only for data with the same classes.
"""
import os
import sys

import numpy as np

from src.model_utils.errors import ArgumentParser, UserError, atomic_write_text, exit_on_user_error

WRITE_VERSION = (0, 2, 0)  # major, minor, revision written by to-darknet; then seen as int64
MAX_SEEN = 10 ** 13  # images; darknet's ImageNet runs saw ~2e8
LABELS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                           "imagenet_darknet_labels.txt")
RAW_PREFIX = "darknet_raw."
CONV1, BN1_MEAN = "features.0.conv.weight", "features.0.bn.moving_mean"
INPUT_FOLDED, INPUT_RAW = "imagenet_mean_std", "rgb_0_1"  # checkpoint's darknet_input value
LEAKY, DARKNET_CPU_EPS, GPU_EPS = 0.1, 1e-6, 1e-5


# ------------------------------------------------------------------ layout of tiny.cfg
def tiny_cfg_layers(num_classes, in_channels=3):
    """tiny.cfg's convolutions in file order: [(prefix, out, in, kernel, batch_normalize)]."""
    from src.models.tinydarknet import TINY_DARKNET_CFG
    layers, channels = [], in_channels
    for index, item in enumerate(TINY_DARKNET_CFG):
        if item != "M":
            out, kernel = item
            layers.append((f"features.{index}", out, channels, kernel, True))
            channels = out
    return layers + [("classifier", num_classes, channels, 1, False)]


def layer_fields(prefix, out, cin, kernel, bn):
    """[(parameter name, shape)] of one convolution, in darknet's file order."""
    weight = (f"{prefix}.conv.weight" if bn else f"{prefix}.weight", (out, cin, kernel, kernel))
    if not bn:
        return [(f"{prefix}.bias", (out,)), weight]
    fields = ("beta", "gamma", "moving_mean", "moving_variance")  # biases, scales, rolling stats
    return [(f"{prefix}.bn.{f}", (out,)) for f in fields] + [weight]


def file_layout(num_classes):
    return [field for layer in tiny_cfg_layers(num_classes) for field in layer_fields(*layer)]


def value_count(num_classes):
    """float32 values after the header of a tiny.cfg file for ``num_classes`` outputs."""
    return sum(int(np.prod(shape)) for _, shape in file_layout(num_classes))


# ------------------------------------------------------------------ darknet files
def parse_header(buf, path):
    """(version tuple, seen, header bytes) of a .weights file's bytes; UserError if implausible."""
    if len(buf) < 16:
        raise UserError(f"{path} is {len(buf)} bytes, too short for a darknet .weights file "
                        "(16- or 20-byte header, then float32 values)")
    major, minor, revision = (int(v) for v in np.frombuffer(buf, "<i4", 3))
    if major != 0 or not 0 <= minor <= 2 or not 0 <= revision < 1000:
        raise UserError(f"{path}: header version {major}.{minor}.{revision} is not one darknet "
                        "writes (0.0-0.2, revision 0-999): not a darknet .weights file")
    wide = major * 10 + minor >= 2  # darknet's rule: 64-bit seen from version 0.2 on
    if wide and len(buf) < 20:
        raise UserError(f"{path} is {len(buf)} bytes, shorter than the 20-byte header of darknet "
                        f"{major}.{minor} weights")
    seen = int(np.frombuffer(buf, "<i8" if wide else "<i4", 1, 12)[0])
    if not 0 <= seen <= MAX_SEEN:
        raise UserError(f"{path}: header says {seen} images were seen in training (expected 0 to "
                        f"{MAX_SEEN:.0e}): not a darknet .weights file")
    return (major, minor, revision), seen, 20 if wide else 16


def _size_error(path, body, header_bytes, num_classes):
    need = value_count(num_classes)
    if body % 4:
        return UserError(f"{path}: {body} bytes after the {header_bytes}-byte header, not a whole "
                         f"number of float32 values (tiny.cfg with {num_classes} classes needs "
                         f"{need} values): not a darknet .weights file, or a truncated one")
    per_class = value_count(1) - value_count(0)
    classes, rest = divmod(body // 4 - value_count(0), per_class)
    hint = (f"; that is the size for tiny.cfg with {classes} classes: pass --num_classes {classes}"
            if rest == 0 and classes > 0 else "; it is a file for another cfg, or a truncated one")
    return UserError(f"{path} holds {body // 4} float32 values after its header, expected {need} "
                     f"for tiny.cfg with {num_classes} classes{hint}")


def read_darknet(path, num_classes=1000):
    """Read a tiny.cfg .weights file. Returns ({parameter name: float32 array}, version, seen)."""
    if num_classes < 1:
        raise UserError(f"--num_classes must be at least 1, got {num_classes}")
    if not os.path.isfile(path):
        raise UserError(f"darknet weights file not found: {path!r}")
    with open(path, "rb") as f:
        buf = f.read()
    version, seen, header_bytes = parse_header(buf, path)
    body = len(buf) - header_bytes
    if body != 4 * value_count(num_classes):
        raise _size_error(path, body, header_bytes, num_classes)
    values = np.frombuffer(buf, "<f4", offset=header_bytes).astype(np.float32)
    params, pos = {}, 0
    for name, shape in file_layout(num_classes):
        size = int(np.prod(shape))
        params[name] = values[pos:pos + size].reshape(shape)
        pos += size
    bad = next((n for n, v in params.items() if not np.isfinite(v).all()), None)
    if bad:
        raise UserError(f"{path}: {bad} holds NaN or infinite values: not a usable trained file")
    bad = next((n for n, v in params.items() if n.endswith("moving_variance") and (v < 0).any()), None)
    if bad:
        raise UserError(f"{path}: {bad} (a rolling variance) has negative values: the file does "
                        "not follow tiny.cfg's layout")
    return params, version, seen


def write_darknet(path, params, num_classes, seen=0):
    """Write ``params`` (this repo's names, darknet's values) as a tiny.cfg .weights file."""
    header = np.array(WRITE_VERSION, "<i4").tobytes() + np.array([seen], "<i8").tobytes()
    body = [np.ascontiguousarray(params[name], "<f4").tobytes() for name, _ in file_layout(num_classes)]
    _atomic_write(path, header + b"".join(body))


def _atomic_write(path, data):
    atomic_write_text(path, data)  # .tmp + rename; a failed write is one line, no .tmp left


# ------------------------------------------------------------------ input scaling of conv 1
def _input_norm():
    """(mean, std) per RGB channel in [0, 1] units: the repo pipeline's x = (x01 - mean) / std."""
    from src.data.classification import IMAGENET_MEAN, IMAGENET_STD
    return np.array(IMAGENET_MEAN) / 255.0, np.array(IMAGENET_STD) / 255.0


def fold_input_norm(weight, moving_mean):
    """darknet conv 1 (RGB in [0, 1]) -> this repo's normalised input (float64 maths)."""
    mean, std = _input_norm()
    w = weight.astype(np.float64)
    shift = (w * mean[None, :, None, None]).sum(axis=(1, 2, 3))
    return ((w * std[None, :, None, None]).astype(np.float32),
            (moving_mean.astype(np.float64) - shift).astype(np.float32))


def unfold_input_norm(weight, moving_mean):
    """Inverse of :func:`fold_input_norm` (exact to float32 rounding)."""
    mean, std = _input_norm()
    w = (weight.astype(np.float64) / std[None, :, None, None]).astype(np.float32)
    shift = (w.astype(np.float64) * mean[None, :, None, None]).sum(axis=(1, 2, 3))
    return w, (moving_mean.astype(np.float64) + shift).astype(np.float32)


def darknet_to_repo(params):
    """Fold the input scaling into conv 1 and keep the two originals under ``darknet_raw.``."""
    out = dict(params)
    out[CONV1], out[BN1_MEAN] = fold_input_norm(params[CONV1], params[BN1_MEAN])
    out[RAW_PREFIX + CONV1], out[RAW_PREFIX + BN1_MEAN] = params[CONV1], params[BN1_MEAN]
    return out


def repo_to_darknet(params):
    """Inverse of :func:`darknet_to_repo`. Returns (params, exact): the stored originals when they
    still fold to exactly the checkpoint's values, else the unfolded values."""
    out = {k: v for k, v in params.items() if not k.startswith(RAW_PREFIX)}
    raw = params.get(RAW_PREFIX + CONV1), params.get(RAW_PREFIX + BN1_MEAN)
    current = params[CONV1], params[BN1_MEAN]
    if raw[0] is not None and raw[1] is not None and all(
            np.array_equal(a, b) for a, b in zip(fold_input_norm(*raw), current)):
        out[CONV1], out[BN1_MEAN] = raw
        return out, True
    out[CONV1], out[BN1_MEAN] = unfold_input_norm(*current)
    return out, False


# ------------------------------------------------------------------ checkpoints
def read_class_names(path, num_classes):
    """Class names in label order from a text file: one per line, '#' comments and blank lines
    skipped; on a ``wnid<TAB>name`` line the first field (the synset id) is the class name."""
    if not os.path.isfile(path):
        raise UserError(f"class names file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        names = [line.rstrip("\n").split("\t")[0].strip() for line in f]
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) != num_classes:
        raise UserError(f"{path} lists {len(names)} class names, expected {num_classes} "
                        "(one per line, in the order of the network's outputs)")
    return names


def save_repo_checkpoint(path, params, class_names, seen, folded):
    """Save as train.py does: parameters plus model_name / class_names strings."""
    import mindspore as ms
    from src.checkpoint import checkpoint_meta, save_checkpoint_atomic
    meta = dict(checkpoint_meta("tinydarknet", class_names), darknet_seen=str(seen),
                darknet_input=INPUT_FOLDED if folded else INPUT_RAW)
    tensors = [{"name": n, "data": ms.Tensor(v)} for n, v in params.items()]
    save_checkpoint_atomic(tensors, path, append_dict=meta)


def read_repo_checkpoint(path, log=None):
    """({name: float32 array}, meta strings, num_classes) of a Tiny-DarkNet checkpoint for tiny.cfg
    (``path``: a file, or a folder: its newest checkpoint)."""
    import mindspore as ms
    from src.checkpoint import read_checkpoint, resolve_checkpoint
    path = resolve_checkpoint(path, "to-darknet CKPT", log=log)
    loaded = read_checkpoint(path)
    meta = {k: v for k, v in loaded.items() if isinstance(v, str)}
    if meta.get("model_name", "tinydarknet") != "tinydarknet":
        raise UserError(f"{path} holds a {meta['model_name']} model; only tinydarknet maps to tiny.cfg")
    params = {k: v.asnumpy() for k, v in loaded.items() if isinstance(v, ms.Parameter)}
    if "classifier.weight" not in params:
        raise UserError(f"{path} has no classifier.weight: not a Tiny-DarkNet checkpoint")
    num_classes, _, _, _ = params["classifier.weight"].shape
    for name, shape in file_layout(num_classes):
        if name not in params:
            raise UserError(f"{path} lacks {name}: not a Tiny-DarkNet checkpoint")
        if tuple(params[name].shape) != shape:
            raise UserError(f"{path}: {name} has shape {tuple(params[name].shape)}, tiny.cfg needs "
                            f"{shape} (3-channel input, {num_classes} classes)")
    return params, meta, num_classes


def to_checkpoint(weights, ckpt, num_classes=1000, class_names_file=None, raw=False, log=print):
    """tiny.cfg .weights -> checkpoint; returns the saved parameters."""
    params, version, seen = read_darknet(weights, num_classes)
    names = None
    if class_names_file:
        names = read_class_names(class_names_file, num_classes)
    elif num_classes == 1000:
        names = read_class_names(LABELS_FILE, 1000)
    log(f"read {weights}: darknet {'.'.join(map(str, version))}, {seen} images seen, "
        f"{value_count(num_classes)} values in {len(tiny_cfg_layers(num_classes))} convolutions")
    log(bn_eps_report(params))
    saved = params if raw else darknet_to_repo(params)
    save_repo_checkpoint(ckpt, saved, names, seen, folded=not raw)
    log(f"wrote {ckpt}: tinydarknet, {num_classes} classes, "
        + ("values unchanged (expects RGB in [0, 1] input)" if raw else
           "input scaling folded into conv 1 (expects this repo's ImageNet-normalised input)")
        + ("" if names else "; no class names stored (pass --class_names FILE)"))
    return saved


def to_darknet(ckpt, weights, raw=False, log=print):
    """Checkpoint -> tiny.cfg .weights; returns the written parameters."""
    params, meta, num_classes = read_repo_checkpoint(ckpt, log=log)
    if raw or meta.get("darknet_input") == INPUT_RAW:
        out, how = params, "values unchanged"
    else:
        out, exact = repo_to_darknet(params)
        how = ("conv 1 restored from the stored darknet originals" if exact else
               "input scaling unfolded from conv 1 (to float32 rounding)")
    seen = int(meta.get("darknet_seen", "0"))
    write_darknet(weights, out, num_classes, seen)
    log(f"wrote {weights}: tiny.cfg, {num_classes} classes, header "
        f"{'.'.join(map(str, WRITE_VERSION))} seen {seen}; {how}")
    return out


# ------------------------------------------------------------------ darknet's formula, measured
def bn_eps_report(params):
    """One line: how far darknet's CPU BN formula is from this network's for these variances."""
    var = np.concatenate([v for n, v in params.items() if n.endswith("moving_variance")]).astype(np.float64)
    ratio = np.sqrt(var + GPU_EPS) / (np.sqrt(var) + DARKNET_CPU_EPS)  # darknet CPU / this network
    return (f"BatchNorm: rolling variances {var.min():.3g} to {var.max():.3g}; this network computes "
            f"darknet's GPU formula sqrt(v + 1e-5); its CPU formula sqrt(v) + 1e-6 would give "
            f"{ratio.min():.4f}x to {ratio.max():.4f}x the normalised values")


def darknet_forward(params, x01, formula="cpu", first_pad=None):
    """tiny.cfg inference as darknet computes it, in numpy float64 (a reference, not fast).

    ``params``: darknet values under this repo's names; ``x01``: (N, 3, H, W) RGB in [0, 1].
    ``formula``: 'cpu' divides by sqrt(v) + 1e-6, 'gpu' by sqrt(v + 1e-5). ``first_pad``: the
    per-channel value padding convolution 1 (darknet: zeros). Returns (N, classes) logits.
    """
    from src.models.tinydarknet import TINY_DARKNET_CFG
    x = np.asarray(x01, np.float64)
    pools = [i - 1 for i, item in enumerate(TINY_DARKNET_CFG) if item == "M"]  # conv before "M"
    for prefix, _, _, _, bn in tiny_cfg_layers(params["classifier.weight"].shape[0]):
        index = int(prefix.split(".")[1]) if bn else -1
        pad = first_pad if index == 0 else None
        if bn:
            x = _conv(x, params[prefix + ".conv.weight"], pad)
            mean, var = (params[f"{prefix}.bn.{f}"].astype(np.float64)[:, None, None]
                         for f in ("moving_mean", "moving_variance"))
            scale = np.sqrt(var) + DARKNET_CPU_EPS if formula == "cpu" else np.sqrt(var + GPU_EPS)
            x = (x - mean) / scale * params[prefix + ".bn.gamma"][:, None, None] \
                + params[prefix + ".bn.beta"][:, None, None]
            x = np.where(x > 0, x, LEAKY * x)
            if index in pools:
                n, c, h, w = x.shape
                x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        else:
            x = _conv(x, params[prefix + ".weight"]) + params[prefix + ".bias"][:, None, None]
    return x.mean(axis=(2, 3))


def _conv(x, weight, pad_values=None):
    """Stride-1 'same' convolution (cross-correlation, as darknet's im2col + GEMM)."""
    n, c, h, w = x.shape
    out, _, k, _ = weight.shape
    p = k // 2
    if p:
        padded = np.empty((n, c, h + 2 * p, w + 2 * p))
        padded[:] = (np.zeros(c) if pad_values is None else np.asarray(pad_values))[None, :, None, None]
        padded[:, :, p:p + h, p:p + w] = x
        x = padded
    cols = np.stack([x[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=2)
    cols = cols.reshape(n, c * k * k, h * w)
    return np.matmul(weight.reshape(out, -1).astype(np.float64), cols).reshape(n, out, h, w)


def network_logits(params, x):
    """This repo's TinyDarkNet (inference mode) with ``params`` loaded, on numpy input ``x``."""
    import mindspore as ms
    from src.models.tinydarknet import TinyDarkNet
    net = TinyDarkNet(num_classes=params["classifier.weight"].shape[0])
    own = {p.name for p in net.get_parameters()}
    tensors = {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items() if k in own}
    ms.load_param_into_net(net, tensors, strict_load=True)
    net.set_train(False)
    return net(ms.Tensor(np.asarray(x, np.float32))).asnumpy().astype(np.float64)


def compare(params, image_size=224, images=2, seed=0):
    """Max |logit difference| between the converted network, fed random images normalised as this
    repo's pipelines do, and darknet's formulas on the same images in [0, 1]: 'exact' = GPU formula
    with conv 1 padded by the mean colour (the conversion alone), 'gpu' / 'cpu' = darknet as is."""
    rng = np.random.default_rng(seed)
    x01 = rng.integers(0, 256, (images, 3, image_size, image_size)) / 255.0
    mean, std = _input_norm()
    logits = network_logits(darknet_to_repo(params), (x01 - mean[:, None, None]) / std[:, None, None])
    refs = {"exact": darknet_forward(params, x01, "gpu", first_pad=mean),
            "gpu": darknet_forward(params, x01, "gpu"), "cpu": darknet_forward(params, x01, "cpu")}
    result = {"logit_scale": float(np.abs(refs["gpu"]).max())}
    for name, ref in refs.items():
        result[name] = float(np.abs(logits - ref).max())
        result[name + "_top1_agree"] = float((logits.argmax(1) == ref.argmax(1)).mean())
    return result


# ------------------------------------------------------------------ command line
def build_parser():
    parser = ArgumentParser(prog="python -m src.darknet_weights", description=(
        "darknet tiny.cfg .weights <-> MindSpore checkpoint of this repo's Tiny-DarkNet"))
    sub = parser.add_subparsers(dest="command", required=True)
    ckpt = sub.add_parser("to-ckpt", help="darknet .weights -> MindSpore checkpoint")
    ckpt.add_argument("weights")
    ckpt.add_argument("ckpt")
    ckpt.add_argument("--num_classes", type=int, default=1000)
    ckpt.add_argument("--class_names", default="", help="text file, one class name per line "
                      "(default for 1000 classes: darknet's ImageNet synset ids)")
    ckpt.add_argument("--raw", action="store_true", help="copy values unchanged (input RGB in [0, 1])")
    dark = sub.add_parser("to-darknet", help="MindSpore checkpoint -> darknet .weights")
    dark.add_argument("ckpt", help="checkpoint file, or a folder (its newest .ckpt)")
    dark.add_argument("weights")
    dark.add_argument("--raw", action="store_true", help="copy values unchanged (no unfolding)")
    check = sub.add_parser("check", help="measure the converted network against darknet's formulas")
    check.add_argument("weights")
    check.add_argument("--num_classes", type=int, default=1000)
    check.add_argument("--image_size", type=int, default=224)
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "to-ckpt":
        to_checkpoint(args.weights, args.ckpt, args.num_classes, args.class_names or None, args.raw)
    elif args.command == "to-darknet":
        to_darknet(args.ckpt, args.weights, args.raw)
    else:
        if args.image_size < 16 or args.image_size % 16:
            raise UserError(f"--image_size must be a multiple of 16, got {args.image_size}")
        params, _, _ = read_darknet(args.weights, args.num_classes)
        print(bn_eps_report(params))
        r = compare(params, args.image_size)
        print(f"max |logit difference| on 2 random {args.image_size}x{args.image_size} images, logits "
              f"up to {r['logit_scale']:.3g}: conversion {r['exact']:.2g} (vs darknet's GPU formula, "
              f"conv 1 padded with the mean colour as here); vs darknet as is: {r['gpu']:.2g} (GPU "
              f"formula, black padding), {r['cpu']:.2g} (CPU formula); same top-1: "
              f"{r['gpu_top1_agree']:.0%} / {r['cpu_top1_agree']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
