"""ConvLSTM encoding-forecasting network of Shi et al., NeurIPS 2015 (section 3 and 4.1).

Cell (``*`` = convolution with zero padding, ``o`` = element-wise product, ``s`` = sigmoid)::

    i  = s(Wxi * x + Whi * h + wci o c  + bi)
    f  = s(Wxf * x + Whf * h + wcf o c  + bf)
    c' = f o c + i o tanh(Wxc * x + Whc * h + bc)
    o  = s(Wxo * x + Who * h + wco o c' + bo)
    h' = o o tanh(c')

Network: frames are cut into ``patch x patch`` patches (space-to-depth: a 64x64x1 frame becomes a
16x16x16 tensor). An encoder stack reads the input frames; a forecaster stack of the same depth
starts from copies of the encoder's last (h, c) states. The first forecaster layer has no input
(state-to-state only); deeper forecaster layers take the hidden state of the layer below. Each
prediction is a 1x1 convolution (with bias) over the concatenation of all forecaster layers'
hidden states, giving ``patch^2 * C`` channels that are put back into one frame (depth-to-space).
With ``forecaster_input='prediction'`` (not in the paper) the first forecaster layer also reads a
frame: the last input frame at the first step, then its own previous prediction (the sigmoid of
the previous logits, in patch space; gradients flow through it), as autoregressive models such as
OpenSTL's ConvLSTM do. The forecaster then moves a frame it can see instead of redrawing the digits
from its state; with scheduled sampling it gave a lower MSE and a higher SSIM per CPU-minute than
the paper's forecaster (the comparisons are in docs/history.md). It
adds ``4*P*Ch*Kx^2`` weights to that layer.
With ``structure='stack'`` (not in the paper; OpenSTL's ConvLSTM) there is ONE stack of layers,
no encoder/forecaster split: at every step it reads a frame (the true input frames, then its own
previous prediction) and the head predicts the next frame. Trained on every next frame of the
sequence (frames 2..T_in+T_out, the first T_in-1 of them from true inputs), it gets 19 supervised
predictions per sequence of 10+10 instead of 10, half the weights, and learns the motion from
the easy one-step predictions of the input phase (lower MSE and higher SSIM per CPU-minute than
the encoding-forecasting network; docs/history.md). It needs
``forecaster_input='prediction'`` (it always reads the previous frame).
The network returns **logits**; ``predict`` applies the per-pixel sigmoid (the loss is per-pixel
binary cross-entropy, computed on logits for numerical stability, e.g. ``nn.BCEWithLogitsLoss``).

Parameter count (one definition, which reproduces all five ConvLSTM rows of the paper's Table 1:
13,524,496 / 10,042,896 / 7,585,296 / 11,550,224 / 8,830,480). Per layer with input channels
``Cin`` (0 for the first forecaster layer), hidden channels ``Ch``, kernels ``Kx`` / ``Kh``:

    4*Cin*Ch*Kx^2  (input-to-state weights, absent when Cin = 0)
  + 4*Ch*Ch*Kh^2   (state-to-state weights)
  + 4*Ch           (gate biases bi, bf, bc, bo; one set per layer, also when Cin = 0)
  + 3*Ch           (peepholes wci, wcf, wco: one scalar per channel per gate)

plus the output convolution ``sum(Ch)*P*Ko^2 + P`` with ``P = patch^2*C`` and head kernel ``Ko`` (1 in the
paper: a 1x1 convolution). The encoder's first layer
input is the 16-channel patched frame. Every gate has exactly one bias.

Fused gates: when ``Kx == Kh`` a cell with an input computes ``Wx * x + Wh * h`` as ONE convolution
``conv_xh`` over ``concat([x, h])`` (weight ``(4*Ch, Cin + Ch, K, K)`` = ``[Wx | Wh]`` along the
input channels, with the gate biases): one GEMM instead of two and no add, same parameter count.
Otherwise (``Kx != Kh``, or ``fuse_gates=False``) it has ``conv_x`` (with the biases) and
``conv_h``; the input-less cell has ``conv_h`` with the biases. Checkpoints of either layout load
into either network through ``convert_legacy_params``.

Initialisation (not given by the paper): convolution weights Kaiming-uniform
U(-sqrt(6/fan_in), sqrt(6/fan_in)), biases 0 except the forget gate's bias = 1, peepholes 0. The
fused weight is initialised as its two parts would be (fan_in of Wx and of Wh separately), so
training starts from the same distribution in both layouts.
"""
import re

import numpy as np
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Parameter, Tensor
from mindspore.common.initializer import HeUniform, initializer

from src.kernels.layers import Conv2d, KernelSite, reference_lstm_gates
from src.kernels.lstm_gates import lstm_gates_op


FORECASTER_INPUTS = ("none", "prediction")
STRUCTURES = ("encoder_forecaster", "stack")


def _weight_init():
    # Kaiming-uniform with gain sqrt(2). PyTorch's smaller default (negative_slope=sqrt(5)) left
    # the network on the "predict the mean pixel" plateau for far longer in our CPU runs: on one
    # fixed batch of 8 sequences (hidden 32-32, 3x3, Adam 2e-3) the loss was 0.182 after 100
    # steps with it, 0.166 with this one.
    return HeUniform()


class ConvLSTMCell(KernelSite, nn.Cell):
    """One ConvLSTM layer with peephole connections.

    Args:
        in_channels (int): input channels; 0 means the cell has no input (state-to-state only).
        hidden_channels (int): channels of h and c.
        input_kernel (int): input-to-state kernel size (odd; zero padding keeps the size).
        state_kernel (int): state-to-state kernel size (odd).
        forget_bias (float): initial value of the forget gate's bias.
        fuse_gates (bool): one convolution over concat([x, h]) when the kernels are equal (the
            default; same parameters and outputs as two, faster); False keeps ``conv_x`` and
            ``conv_h`` (the layout of checkpoints written before the fused gates existed).

    Kernel (set by ``src.kernels``): ``native``, the gate math below as MindSpore ops (any
    device, exportable), or ``fused``, one CPU kernel per direction
    (``src.kernels.lstm_gates``; ~1e-4 from native and closer to float64; CPU only). Shape key:
    ``(hidden_channels, h, w)`` of the state.

    ``construct(x, h, c)`` -> ``(h', c')``; ``x`` is ignored (pass ``None``) when in_channels=0.
    Gate order inside the ``4*hidden`` conv output channels: i, f, c~, o.
    """

    kernel_kind = "lstm_gates"

    def __init__(self, in_channels, hidden_channels, input_kernel, state_kernel, forget_bias=1.0,
                 fuse_gates=True):
        super().__init__()
        self.gate_op = None
        for k in (input_kernel, state_kernel):
            if k % 2 != 1:
                raise ValueError(f"ConvLSTMCell kernel sizes must be odd, got {k}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.has_input = in_channels > 0
        self.fused = self.has_input and fuse_gates and input_kernel == state_kernel
        gates = 4 * hidden_channels
        if self.fused:
            self.conv_xh = Conv2d(in_channels + hidden_channels, gates, input_kernel, has_bias=True,
                                  input_parts=2)
            parts = [initializer(_weight_init(), (gates, ch, input_kernel, input_kernel), ms.float32)
                     for ch in (in_channels, hidden_channels)]
            self.conv_xh.weight.set_data(ops.cat([p.init_data() for p in parts], 1))
            bias = self.conv_xh.bias
        else:
            if self.has_input:
                self.conv_x = Conv2d(in_channels, gates, input_kernel, has_bias=True,
                                     weight_init=_weight_init())
            self.conv_h = Conv2d(hidden_channels, gates, state_kernel, has_bias=not self.has_input,
                                 weight_init=_weight_init())
            bias = (self.conv_x if self.has_input else self.conv_h).bias
        init = np.zeros(gates, np.float32)
        init[hidden_channels:2 * hidden_channels] = forget_bias
        bias.set_data(Tensor(init))
        self.w_ci = Parameter(initializer("zeros", (hidden_channels,), ms.float32), name="w_ci")
        self.w_cf = Parameter(initializer("zeros", (hidden_channels,), ms.float32), name="w_cf")
        self.w_co = Parameter(initializer("zeros", (hidden_channels,), ms.float32), name="w_co")

    def set_kernel(self, impl):
        if impl not in ("native", "fused"):
            raise ValueError(f"ConvLSTMCell: impl must be native or fused, got {impl!r}")
        self.kernel_impl = impl
        self.gate_op = lstm_gates_op() if impl == "fused" else None

    def peepholes(self, state_shape):
        """The peephole weights broadcast to the state's shape ``(N, Ch, H, W)`` once.

        A network that runs the cell over many steps passes them to every step: each step then
        multiplies tensors of one shape (MindSpore's CPU kernels are several times slower on
        broadcast operands), and the backward pass sums the steps' gradients before the single
        reduction to per-channel weights, instead of one reduction per step and gate.
        """
        return tuple(ops.broadcast_to(w.reshape(1, -1, 1, 1), state_shape)
                     for w in (self.w_ci, self.w_cf, self.w_co))

    def step_constants(self, state):
        """What every step of one sequence shares, computed once before the steps: the
        peepholes (:meth:`peepholes`; with the ``fused`` kernel the (Ch,) parameters, which
        the fused kernel reads per channel) and the gate convolution's prepared weights
        (``layers.Conv2d.prepare``: oneDNN's layout, or None). ``state``: a (N, Ch, H, W) state."""
        conv = self.conv_xh if self.fused else None if self.has_input else self.conv_h
        prepared = None if conv is None else conv.prepare(state)
        if self.gate_op is not None:
            return (self.w_ci, self.w_cf, self.w_co, prepared)
        return self.peepholes(state.shape) + (prepared,)

    def construct(self, x, h, c, constants=None):
        """One step: ``(h', c')``; ``constants`` from :meth:`step_constants` (computed here if
        None). ``h=None`` (a cell with an input): the state is zero, as at the first step of a
        sequence, and the state-to-state convolution is skipped (only ``Wx * x``: with fused
        gates the input channels' share of the weights, ``Conv2d.prefix_construct``); ``c``
        is still given (zeros)."""
        if self.shape_trace is not None:
            self.shape_trace(self, tuple(c.shape[1:]))
        if constants is None:
            constants = self.step_constants(c)
        w_ci, w_cf, w_co, prepared = constants
        if h is None:
            z = self.conv_xh.prefix_construct(x) if self.fused else self.conv_x(x)
        elif self.fused:
            z = self.conv_xh.concat_construct((x, h), prepared)
        elif self.has_input:
            z = self.conv_x(x) + self.conv_h(h)
        else:
            z = self.conv_h(h, prepared)
        if self.gate_op is not None:
            return self.gate_op(z, c, w_ci, w_cf, w_co)
        return reference_lstm_gates(z, c, w_ci, w_cf, w_co)


class ConvLSTM(nn.Cell):
    """Encoding-forecasting ConvLSTM network.

    Args:
        in_channels (int): channels C of a frame (1 for Moving MNIST).
        patch_size (int): p; frames are reshaped to (p*p*C, H/p, W/p).
        hidden_channels (tuple[int]): hidden channels per layer (same for encoder and forecaster).
        input_kernel (int): input-to-state kernel size.
        state_kernel (int): state-to-state kernel size.
        input_frames (int): number of input frames (documentation / export shape; the encoder runs
            over however many frames the input has).
        output_frames (int): number of predicted frames.
        fuse_gates (bool): one gate convolution over concat([x, h]) where the kernels are equal
            (see ``ConvLSTMCell``); checkpoints of both layouts load via ``convert_legacy_params``.
        forecaster_input (str): ``'none'`` (the paper: the first forecaster layer has no input)
            or ``'prediction'`` (it reads the previous frame: the last input frame, then its own
            predictions).
        structure (str): ``'encoder_forecaster'`` (the paper) or ``'stack'`` (one stack that reads
            every frame and predicts the next; needs ``forecaster_input='prediction'``).
        head_kernel (int): kernel of the output convolution over the hidden states (odd; 1 in
            the paper). 3 lets each predicted patch be drawn from its neighbours' states too.

    The kernels of its convolutions and gates are chosen per run by ``src.kernels`` (every layer
    starts native).

    Input: (N, T_in, C, H, W) float32 in [0, 1], H and W divisible by p.
    Output: (N, output_frames, C, H, W) logits; ``predict`` returns probabilities.
    """

    def __init__(self, in_channels=1, patch_size=4, hidden_channels=(128, 64, 64), input_kernel=5,
                 state_kernel=5, input_frames=10, output_frames=10, fuse_gates=True,
                 forecaster_input="none", structure="encoder_forecaster", head_kernel=1):
        super().__init__()
        if head_kernel < 1 or head_kernel % 2 != 1:
            raise ValueError(f"ConvLSTM: head_kernel must be odd and >= 1, got {head_kernel}")
        if forecaster_input not in FORECASTER_INPUTS:
            raise ValueError(f"ConvLSTM: forecaster_input must be one of {', '.join(FORECASTER_INPUTS)}, "
                             f"got {forecaster_input!r}")
        if structure not in STRUCTURES:
            raise ValueError(f"ConvLSTM: structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
        self.single_stack = structure == "stack"
        if self.single_stack and forecaster_input != "prediction":
            raise ValueError("ConvLSTM: structure 'stack' reads its own predictions: set "
                             "forecaster_input: prediction")
        self.feed_prediction = forecaster_input == "prediction"
        hidden_channels = tuple(int(h) for h in hidden_channels)
        if not hidden_channels:
            raise ValueError("ConvLSTM needs at least one layer (hidden_channels is empty)")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.hidden_channels = hidden_channels
        self.num_layers = len(hidden_channels)
        self.input_frames = input_frames
        self.output_frames = output_frames
        patch_ch = patch_size * patch_size * in_channels
        self.patch_channels = patch_ch

        def cell(cin, hid):
            return ConvLSTMCell(cin, hid, input_kernel, state_kernel, fuse_gates=fuse_gates)

        enc, fore = [], []
        for layer, hid in enumerate(hidden_channels):
            below = patch_ch if layer == 0 else hidden_channels[layer - 1]
            enc.append(cell(below, hid))
            # the paper's first forecaster layer has no input; with feed_prediction it reads a frame
            if not self.single_stack:
                fore.append(cell(below if layer or self.feed_prediction else 0, hid))
        if self.single_stack:
            self.stack = nn.CellList(enc)
        else:
            self.encoder = nn.CellList(enc)
            self.forecaster = nn.CellList(fore)
        self.head = Conv2d(sum(hidden_channels), patch_ch, head_kernel, has_bias=True,
                           weight_init=_weight_init(), input_parts=self.num_layers)

    def patchify(self, x):
        """(N, T, C, H, W) -> (N, T, p*p*C, H/p, W/p); channel order (C, row-in-patch, col)."""
        n, t, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(n * t, c, h // p, p, w // p, p).transpose(0, 1, 3, 5, 2, 4)
        return x.reshape(n, t, c * p * p, h // p, w // p)

    def unpatchify(self, x):
        """(N, p*p*C, H/p, W/p) -> (N, 1, C, H, W); inverse of ``patchify`` for one frame (fold
        the time axis into N for several)."""
        n, _, hp, wp = x.shape
        p = self.patch_size
        c = self.in_channels
        x = x.reshape(n, c, p, p, hp, wp).transpose(0, 1, 4, 2, 5, 3)
        return x.reshape(n, 1, c, hp * p, wp * p)

    def _input_cells(self):
        return self.stack if self.single_stack else self.encoder

    def _forecast_cells(self):
        return self.stack if self.single_stack else self.forecaster

    def encode(self, x, return_sequence=False):
        """Run the encoder (the stack, with ``structure='stack'``) over (N, T, C, H, W) input frames.

        Returns (hs, cs): lists of the last hidden/cell states per layer (N, Ch, H/p, W/p);
        with ``return_sequence=True`` also the top layer's hidden state after every step,
        (N, T, Ch_top, H/p, W/p). Step t only sees frames 0..t.
        """
        hs, cs, _, seq, _, _ = self._read_inputs(x, return_sequence=return_sequence)
        if return_sequence:
            return hs, cs, seq
        return hs, cs

    def _read_inputs(self, x, heads="none", return_sequence=False):
        """The input cells (encoder or stack) over the input frames ``x``: returns ``(hs, cs,
        constants, seq, logits, head_weights)``. ``constants``: each cell's
        ``step_constants``; ``logits``: the head's prediction of the next frame after every
        input frame (``heads='all'``), after the last one (``'last'``) or none; ``seq``: the top
        layer's hidden states (``return_sequence``) or None; ``head_weights``: the head's
        prepared weights (``layers.Conv2d.prepare``) when it ran, else None."""
        n, t_in, c, h, w = x.shape
        p = self.patch_size
        if c != self.in_channels or h % p != 0 or w % p != 0:
            raise ValueError(f"ConvLSTM expects (N, T, {self.in_channels}, H, W) with H and W "
                             f"divisible by {p}, got {x.shape}")
        xp = self.patchify(x)
        hs = []
        cs = []
        for hid in self.hidden_channels:
            hs.append(ops.zeros((n, hid, h // p, w // p), x.dtype))
            cs.append(ops.zeros((n, hid, h // p, w // p), x.dtype))
        peep = [cell.step_constants(state) for cell, state in zip(self._input_cells(), cs)]
        head_weights = self.head.prepare(hs[0]) if heads != "none" else None
        seq = None
        logits = []
        # training: every frame in one Unstack kernel (its backward: one Stack) instead of a
        # StridedSlice and its gradient per step (~0.2 ms each on CPU, ~10 % of a convlstm_cpu
        # training step); inference keeps the slices, which export to ONNX (Unstack does not)
        frames = ops.unstack(xp, 1) if self.training else None
        for step in range(t_in):
            frame = frames[step] if self.training else xp[:, step]
            # the first step's states are zeros: no state-to-state convolution (h None)
            hs, cs = self._step(self._input_cells(), [None] * self.num_layers if step == 0 else hs,
                                cs, peep, frame)
            if return_sequence:
                top = ops.expand_dims(hs[-1], 1)
                seq = top if step == 0 else ops.cat((seq, top), 1)
            if heads == "all" or (heads == "last" and step == t_in - 1):
                logits.append(self.head.concat_construct(tuple(hs), head_weights))
        return hs, cs, peep, seq, logits, head_weights

    def _forecast_step(self, hs, cs, peep, inp=None):
        """One forecaster step (``inp``: the patched frame the first layer reads, or None);
        returns the new (hs, cs)."""
        return self._step(self._forecast_cells(), hs, cs, peep, inp)

    def _step(self, cells, hs, cs, peep, inp):
        """One step of the layers ``cells`` (``inp``: what the first layer reads, or None);
        returns the new (hs, cs).

        States are returned, not mutated in place: GRAPH mode does not propagate in-place list
        updates out of a called function.
        """
        new_hs = []
        new_cs = []
        for layer in range(self.num_layers):
            h_new, c_new = cells[layer](inp, hs[layer], cs[layer], peep[layer])
            new_hs.append(h_new)
            new_cs.append(c_new)
            inp = h_new
        return new_hs, new_cs

    def construct(self, x, target=None, truth_prob=None):
        """Logits ``(N, output_frames, C, H, W)`` of the frames after ``x``.

        ``target`` and ``truth_prob`` (training with ``forecaster_input='prediction'`` only,
        scheduled sampling): the next frame the forecaster reads is, per sequence and step, the
        true frame ``target[:, t]`` with probability ``truth_prob`` (a scalar tensor), its own
        prediction otherwise. Without them (evaluation, export) it always reads its predictions.

        With ``structure='stack'`` and ``target`` given (training) the logits of every next frame
        are returned, ``(N, T_in - 1 + output_frames, C, H, W)``: the predictions of input frames
        2..T_in (from the true frames before them) then the forecast; :meth:`training_targets`
        gives the frames they are compared with.
        """
        if self.single_stack:
            hs, cs, peep, _, logits, head_weights = self._read_inputs(
                x, "all" if target is not None else "last")
        else:
            hs, cs = self.encode(x)
            peep = [cell.step_constants(state) for cell, state in zip(self.forecaster, cs)]
            logits = []
            head_weights = self.head.prepare(hs[0]) if self.feed_prediction else None
        if self.feed_prediction:
            frame = self.patchify(x[:, -1:])[:, 0]  # the last input frame, (N, P, H/p, W/p)
            sampled = target is not None and truth_prob is not None and self.output_frames > 1
            # GRAPH mode needs both names bound on both branches of a condition
            kept_truth, drop = self._sampling_draws(target, truth_prob) if sampled else (None, None)
            for step in range(self.output_frames):
                if self.single_stack and step == 0:  # the stack has read the last input frame
                    z = logits[-1]
                else:
                    hs, cs = self._forecast_step(hs, cs, peep, frame)
                    z = self.head.concat_construct(tuple(hs), head_weights)
                    logits.append(z)
                frame = ops.sigmoid(z)
                if sampled and step + 1 < self.output_frames:
                    frame = kept_truth[step] + drop[step] * frame
            return self._frames(ops.stack(tuple(logits), 1))
        states = []
        for _ in range(self.output_frames):
            hs, cs = self._forecast_step(hs, cs, peep)
            states.append(ops.cat(hs, 1))
        # the 1x1 output convolution of every step at once: one GEMM (and one in the backward
        # pass) over all predicted frames instead of one per frame
        z = ops.stack(tuple(states), 1)  # (N, T_out, sum(Ch), H/p, W/p)
        n, t = z.shape[0], z.shape[1]
        frames = self.head(z.reshape((n * t,) + z.shape[2:]))
        return self._frames(frames.reshape((n, t) + frames.shape[1:]))

    def _sampling_draws(self, target, truth_prob):
        """Every step's scheduled-sampling draw at once (per sequence and step: the true frame
        with probability ``truth_prob``): ``(keep * truth, 1 - keep)`` over the first
        ``output_frames - 1`` target frames in patch space, as tuples of per-step tensors; a step
        then mixes with one Mul and one Add."""
        truth = self.patchify(target[:, :self.output_frames - 1])
        keep = (ops.rand(truth.shape[:2] + (1, 1, 1)) < truth_prob).astype(truth.dtype)
        return ops.unstack(keep * truth, 1), ops.unstack(1.0 - keep, 1)  # per step, one kernel each

    def training_targets(self, x, y):
        """The frames the training logits (``construct(x, y, ...)``) are compared with: ``y``,
        or with ``structure='stack'`` every frame after the first, ``cat(x[:, 1:], y)``."""
        if self.single_stack and x.shape[1] > 1:
            return ops.cat((x[:, 1:], y), 1)
        return y

    def _frames(self, z):
        """(N, T, p*p*C, H/p, W/p) patch logits -> (N, T, C, H, W) frames, ``unpatchify`` of every
        step in one transpose and one reshape (ONNX export loses the graph output's name when
        the network ends in two reshapes)."""
        n, t, _, hp, wp = z.shape
        p = self.patch_size
        c = self.in_channels
        z = z.reshape(n, t, c, p, p, hp, wp).transpose(0, 1, 2, 5, 3, 6, 4)
        return z.reshape(n, t, c, hp * p, wp * p)

    def predict(self, x):
        """Per-pixel probabilities (sigmoid of the logits), (N, T_out, C, H, W)."""
        return ops.sigmoid(self.construct(x))


def count_parameters(net, trainable_only=True):
    """Number of (trainable) parameter values of ``net``."""
    params = net.trainable_params() if trainable_only else net.get_parameters()
    return int(sum(p.size for p in params))


_GATE_WEIGHT = re.compile(r"^(.*?)((?:encoder|forecaster|stack)\.\d+\.)conv_(x|h|xh)\.(weight|bias)$")


def convert_legacy_params(params, network):
    """Checkpoint entries re-laid out for ``network``'s gate convolutions; returns a new dict.

    Merges ``<cell>.conv_x.weight`` and ``<cell>.conv_h.weight`` into ``<cell>.conv_xh.weight``
    (concatenated along the input channels, x first) and renames ``conv_x.bias`` to
    ``conv_xh.bias`` for every cell of ``network`` that has fused gates; splits them back (at the
    cell's ``in_channels``) for every cell that has ``conv_x`` / ``conv_h``. Entries with a
    prefix (optimizer state such as ``moment.encoder.0.conv_x.weight``) are converted the same
    way. Everything else (other parameters, strings, entries already in the network's layout) is
    passed through unchanged, so calling it on any checkpoint of any network is safe.
    """
    cells = {}  # "encoder.1." -> cell (also when the network is wrapped, e.g. with its loss)
    for name, cell in network.cells_and_names():
        if isinstance(cell, ConvLSTMCell) and cell.has_input:
            cells[".".join(name.split(".")[-2:]) + "."] = cell
    out = dict(params)
    for key in list(params):
        match = _GATE_WEIGHT.match(key)
        if not match or match.group(2) not in cells:
            continue
        prefix, cell_name, conv, kind = match.groups()
        cell = cells[cell_name]
        stem = prefix + cell_name
        if cell.fused and conv == "x":
            if kind == "bias":
                out[stem + "conv_xh.bias"] = _renamed(out.pop(key), stem + "conv_xh.bias")
            elif stem + "conv_h.weight" in params:
                wh = out.pop(stem + "conv_h.weight")
                merged = np.concatenate([_array(out.pop(key)), _array(wh)], axis=1)
                out[stem + "conv_xh.weight"] = Parameter(Tensor(merged), name=stem + "conv_xh.weight")
        elif not cell.fused and conv == "xh":
            if kind == "bias":
                out[stem + "conv_x.bias"] = _renamed(out.pop(key), stem + "conv_x.bias")
            else:
                weight = _array(out.pop(key))
                for part, value in (("x", weight[:, :cell.in_channels]),
                                    ("h", weight[:, cell.in_channels:])):
                    name = f"{stem}conv_{part}.weight"
                    out[name] = Parameter(Tensor(np.ascontiguousarray(value)), name=name)
    return out


def _array(value):
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def _renamed(value, name):
    return Parameter(Tensor(_array(value)), name=name)

