"""PyTorch eager peers of the repo's networks, for ``benchmarks/benchmark.py --peer torch``.

The same architectures as ``src/models`` written with ``torch.nn``, built from the same plain
arguments as :func:`src.models.create_model`, with module and parameter names that mirror the
MindSpore ones (so a MindSpore checkpoint loads with :func:`load_mindspore_params`, which is how
the tests prove the two compute the same function):

* Tiny-DarkNet (darknet ``tiny.cfg``): conv (no bias) + BatchNorm + LeakyReLU(0.1) blocks, 2x2
  max-pools, a 1x1 classifier with bias, global mean pooling;
* ConvLSTM (Shi et al. 2015): peephole cells, encoder and forecaster stacks (or the one
  ``stack``), first forecaster layer without input (or fed the previous frame:
  ``forecaster_input``), 1x1 head with bias over all forecaster hidden states, 4x4 patchify.
  Written the way the MindSpore network computes it: one gate convolution over ``cat([x, h])``
  when the kernels match, the peephole weights expanded once per sequence, the head run once
  over all predicted frames (without feeding), so the benchmark compares frameworks on the same
  algorithm.

:func:`train_step_rate` times optimizer steps with the optimizer, loss and batch the repo trains
with (``src/optimizer.py`` / ``src/loss.py`` names and arguments). PyTorch is not a requirement
of the repository: ``pip install torch`` (CPU wheel) to use this module.
"""
import time

import numpy as np
import torch
from torch import nn

from src.models.tinydarknet import LEAKY_SLOPE, TINY_DARKNET_CFG


class ConvBNLeaky(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              bias=False)
        # MindSpore's BatchNorm2d(momentum=0.9) keeps 0.9 of the old statistics: torch's 0.1
        self.bn = nn.BatchNorm2d(out_channels, momentum=0.1, eps=1e-5)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class TinyDarkNet(nn.Module):
    """Tiny-DarkNet: (N, C, H, W) -> (N, num_classes) logits."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        layers, channels = [], in_channels
        for item in TINY_DARKNET_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvBNLeaky(channels, item[0], item[1]))
                channels = item[0]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=True)

    def forward(self, x):
        return self.classifier(self.features(x)).mean((2, 3))


class ConvLSTMCell(nn.Module):
    """Peephole ConvLSTM cell; ``in_channels=0``: state-to-state only (bias on ``conv_h``)."""

    def __init__(self, in_channels, hidden_channels, input_kernel, state_kernel):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.has_input = in_channels > 0
        # one gate convolution over cat([x, h]) when the kernels match, as the MindSpore cell
        self.fused = self.has_input and input_kernel == state_kernel
        gates = 4 * hidden_channels
        if self.fused:
            self.conv_xh = nn.Conv2d(in_channels + hidden_channels, gates, input_kernel,
                                     padding=input_kernel // 2)
        else:
            if self.has_input:
                self.conv_x = nn.Conv2d(in_channels, gates, input_kernel, padding=input_kernel // 2)
            self.conv_h = nn.Conv2d(hidden_channels, gates, state_kernel, padding=state_kernel // 2,
                                    bias=not self.has_input)
        for name in ("w_ci", "w_cf", "w_co"):
            setattr(self, name, nn.Parameter(torch.zeros(hidden_channels)))

    def peepholes(self, state_shape):
        """The peephole weights expanded to the state's shape once per sequence (as the
        MindSpore network does)."""
        return tuple(w.view(1, -1, 1, 1).expand(state_shape) for w in (self.w_ci, self.w_cf, self.w_co))

    def forward(self, x, h, c, peepholes=None):
        w_ci, w_cf, w_co = peepholes if peepholes is not None else self.peepholes(c.shape)
        if self.fused:
            z = self.conv_xh(torch.cat((x, h), 1))
        else:
            z = self.conv_x(x) + self.conv_h(h) if self.has_input else self.conv_h(h)
        zi, zf, zg, zo = torch.split(z, self.hidden_channels, dim=1)
        i = torch.sigmoid(zi + w_ci * c)
        f = torch.sigmoid(zf + w_cf * c)
        c = f * c + i * torch.tanh(zg)
        o = torch.sigmoid(zo + w_co * c)
        return o * torch.tanh(c), c


class ConvLSTM(nn.Module):
    """Encoding-forecasting ConvLSTM (or the one ``stack``): (N, T_in, C, H, W) ->
    (N, output_frames, C, H, W) logits; with ``target`` (training) as the MindSpore network."""

    def __init__(self, in_channels=1, patch_size=4, hidden_channels=(128, 64, 64), input_kernel=5,
                 state_kernel=5, output_frames=10, forecaster_input="none",
                 structure="encoder_forecaster", head_kernel=1):
        super().__init__()
        self.in_channels, self.patch_size = in_channels, patch_size
        self.feed_prediction = forecaster_input == "prediction"
        self.single_stack = structure == "stack"
        self.hidden_channels = tuple(int(h) for h in hidden_channels)
        self.output_frames = output_frames
        patch_ch = patch_size * patch_size * in_channels
        enc, fore = [], []
        for layer, hid in enumerate(self.hidden_channels):
            below = patch_ch if layer == 0 else self.hidden_channels[layer - 1]
            enc.append(ConvLSTMCell(below, hid, input_kernel, state_kernel))
            if not self.single_stack:
                fore.append(ConvLSTMCell(below if layer or self.feed_prediction else 0, hid,
                                         input_kernel, state_kernel))
        if self.single_stack:
            self.stack = nn.ModuleList(enc)
        else:
            self.encoder, self.forecaster = nn.ModuleList(enc), nn.ModuleList(fore)
        self.head = nn.Conv2d(sum(self.hidden_channels), patch_ch, head_kernel,
                              padding=head_kernel // 2, bias=True)

    def patchify(self, x):
        n, t, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(n * t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(n, t, c * p * p, h // p, w // p)

    def unpatchify(self, x):
        n, _, hp, wp = x.shape
        p, c = self.patch_size, self.in_channels
        x = x.reshape(n, c, p, p, hp, wp).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(n, 1, c, hp * p, wp * p)

    @staticmethod
    def _step(cells, inp, hs, cs, peep):
        for layer, cell in enumerate(cells):
            hs[layer], cs[layer] = cell(inp, hs[layer], cs[layer], peep[layer])
            inp = hs[layer]

    def training_targets(self, x, y):
        """What the training logits are compared with (as the MindSpore network's)."""
        return torch.cat((x[:, 1:], y), 1) if self.single_stack and x.shape[1] > 1 else y

    def forward(self, x, target=None, truth_prob=None):
        n, t_in, _, h, w = x.shape
        xp = self.patchify(x)
        size = (n, h // self.patch_size, w // self.patch_size)
        hs = [x.new_zeros(size[0], hid, *size[1:]) for hid in self.hidden_channels]
        cs = [x.new_zeros(size[0], hid, *size[1:]) for hid in self.hidden_channels]
        cells = self.stack if self.single_stack else self.encoder
        peep = [cell.peepholes(state.shape) for cell, state in zip(cells, cs)]
        states, logits = [], []
        for step in range(t_in):
            self._step(cells, xp[:, step], hs, cs, peep)
            if self.single_stack and (target is not None or step == t_in - 1):
                logits.append(self.head(torch.cat(hs, 1)))
        if not self.single_stack:
            cells = self.forecaster
            peep = [cell.peepholes(state.shape) for cell, state in zip(cells, cs)]
        frame = xp[:, -1]  # what the first forecaster layer reads with feed_prediction
        sampled = target is not None and truth_prob is not None and self.output_frames > 1
        if sampled:  # every step's draw at once, as the MindSpore network
            truth = self.patchify(target[:, :self.output_frames - 1])
            keep = (torch.rand(truth.shape[:2] + (1, 1, 1)) < truth_prob).to(truth.dtype)
            kept_truth, drop = keep * truth, 1.0 - keep
        for step in range(self.output_frames):
            if not (self.single_stack and step == 0):
                self._step(cells, frame if self.feed_prediction else None, hs, cs, peep)
                if self.feed_prediction:
                    logits.append(self.head(torch.cat(hs, 1)))
                else:
                    states.append(torch.cat(hs, 1))
            if self.feed_prediction:
                frame = torch.sigmoid(logits[-1])
                if sampled and step + 1 < self.output_frames:
                    frame = kept_truth[:, step] + drop[:, step] * frame
        if self.feed_prediction:
            z = torch.stack(logits, 1)
        else:  # one head GEMM over every predicted frame
            z = torch.stack(states, 1)
            z = self.head(z.reshape((n * self.output_frames,) + z.shape[2:]))
        frames = self.unpatchify(z.reshape((-1,) + z.shape[-3:]))
        return frames.reshape((n, -1) + frames.shape[2:])


def create_peer(model_name, **kwargs):
    """The PyTorch peer of ``src.models.create_model(model_name, **kwargs)`` (the input frame
    count, which the peer does not need, is ignored)."""
    kwargs.pop("input_frames", None)
    if model_name == "tinydarknet":
        return TinyDarkNet(**kwargs)
    if model_name == "convlstm":
        return ConvLSTM(**kwargs)
    raise ValueError(f"no PyTorch peer for model '{model_name}'")


def count_parameters(model):
    """Trainable parameter values (as ``src.models.convlstm.count_parameters``)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


_MS_TO_TORCH = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                "moving_variance": "running_var"}


def load_mindspore_params(model, params):
    """Copy ``{mindspore parameter name: array}`` into the peer (BatchNorm names translated).
    Every tensor of the peer's state must be given, with its shape."""
    state = model.state_dict()
    new = {}
    for name, value in params.items():
        prefix, _, last = name.rpartition(".")
        key = f"{prefix}.{_MS_TO_TORCH.get(last, last)}" if prefix else name
        if key not in state or tuple(state[key].shape) != tuple(np.shape(value)):
            raise KeyError(f"{name}: no peer tensor {key} of shape {np.shape(value)}")
        new[key] = torch.as_tensor(np.asarray(value, np.float32))
    missing = [k for k in state if k not in new and not k.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"MindSpore parameters missing for {missing[:3]}")
    model.load_state_dict(new, strict=False)
    return model


def _param_groups(model, weight_decay, filter_bias_and_bn):
    """Weight decay on conv weights only, as ``src.optimizer.param_groups``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not filter_bias_and_bn or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() > 1]
    rest = [p for p in params if p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def create_optimizer(name, model, lr, weight_decay=0.0, momentum=0.9, rmsprop_decay=0.9, eps=1e-8,
                     filter_bias_and_bn=True):
    """The torch optimizer of the same kind (``src.optimizer`` names)."""
    groups = _param_groups(model, weight_decay, filter_bias_and_bn)
    if name in ("momentum", "sgd"):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=rmsprop_decay, eps=eps, momentum=0.0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=eps)
    raise ValueError(f"unknown optimizer '{name}'")


def create_loss(name, label_smoothing=0.0):
    """The torch loss of the same kind (``src.loss`` names)."""
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "mse":
        return lambda logits, target: torch.mean((torch.sigmoid(logits) - target) ** 2)
    raise ValueError(f"unknown loss '{name}'")


def train_step_rate(model, x, y, optimizer="momentum", lr=0.01, loss="ce", warmup=2, steps=6,
                    threads=0, label_smoothing=0.0, truth_prob=1.0, **optimizer_kwargs):
    """Time ``warmup + steps`` training steps (forward, loss, backward, optimizer step) on one
    in-memory batch ``x`` (float32 array) with targets ``y`` (int labels for ``ce``, float maps
    otherwise). ``threads`` 0 keeps torch's default. A ConvLSTM that reads its own predictions
    is trained as the MindSpore step does: reading true frames with probability ``truth_prob``
    (scheduled sampling) and, for the ``stack``, on every next frame. Returns samples/s (median
    and best step), step times and the parameter count."""
    if threads:
        torch.set_num_threads(int(threads))
    model.train()
    opt = create_optimizer(optimizer, model, lr, **optimizer_kwargs)
    loss_fn = create_loss(loss, label_smoothing)
    tx = torch.as_tensor(np.asarray(x, np.float32))
    ty = torch.as_tensor(np.asarray(y, np.int64 if loss == "ce" else np.float32))
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if getattr(model, "feed_prediction", False):  # as the MindSpore training step
            value = loss_fn(model(tx, ty, truth_prob), model.training_targets(tx, ty))
        else:
            value = loss_fn(model(tx), ty)
        value.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    measured = times[warmup:] or times[-1:]
    median, best = float(np.median(measured)), float(np.min(measured))
    batch = int(tx.shape[0])
    return {"samples_per_s": batch / median, "samples_per_s_best": batch / best,
            "step_s_median": median, "step_s_best": best, "first_step_s": times[0],
            "measured_steps": len(measured), "params": count_parameters(model),
            "threads": torch.get_num_threads(), "torch": torch.__version__}
