"""Analytical FLOP counts of the repo's networks (convolutions and matmuls only).

One multiply-add = 2 FLOPs. Element-wise work (BatchNorm, activations, gates, pooling, the
optimizer) is not counted: it is memory-bound and small beside the convolutions, and leaving it
out is the usual convention for MFU (model FLOPs utilisation). A training step is counted as
3 x the forward FLOPs (forward, gradient w.r.t. the input, gradient w.r.t. the weights); the
first convolution's input gradient is counted too although no framework needs it, which is the
same convention.

These counts follow the networks' definitions (``TINY_DARKNET_CFG``, the ConvLSTM cell), not
the implementation, so they are the same for native and im2col convolutions.
"""


def conv_flops(batch, in_ch, out_ch, kernel, out_h, out_w):
    """Forward FLOPs of a k x k convolution producing (batch, out_ch, out_h, out_w)."""
    return 2 * batch * out_h * out_w * in_ch * kernel * kernel * out_ch


def tinydarknet_forward_flops(batch=1, image_size=224, num_classes=1000, in_channels=3):
    """Forward FLOPs of Tiny-DarkNet (``src.models.tinydarknet.TINY_DARKNET_CFG``).

    224x224, 1000 classes: 0.98 GFLOPs per image, darknet's published "0.98 Bn ops".
    """
    from src.models.tinydarknet import TINY_DARKNET_CFG
    size, channels, total = image_size, in_channels, 0
    for item in TINY_DARKNET_CFG:
        if item == "M":
            size //= 2
            continue
        out_ch, kernel = item
        total += conv_flops(batch, channels, out_ch, kernel, size, size)
        channels = out_ch
    total += conv_flops(batch, channels, num_classes, 1, size, size)  # classifier 1x1
    return total


def convlstm_forward_flops(batch=1, image_size=64, in_channels=1, patch_size=4,
                           hidden_channels=(128, 64, 64), input_kernel=5, state_kernel=5,
                           input_frames=10, output_frames=10, forecaster_input="none",
                           structure="encoder_forecaster", head_kernel=1):
    """Forward FLOPs of the ConvLSTM (``src.models.convlstm.ConvLSTM``), either structure.

    Every step of every layer runs its input-to-state and state-to-state convolutions (also the
    first encoder step, whose state is zero: the network computes it); the first forecaster
    layer has no input convolution (unless ``forecaster_input='prediction'``); every forecast
    frame costs one output convolution (``head_kernel``, 1x1 in the paper) over the concatenated hidden states. The ``stack``
    runs its layers ``input_frames + output_frames - 1`` times (with inputs), and the head after
    every step in training: its training FLOPs count that head, its inference the ``output_frames``
    heads, so this returns the training forward (the benchmark's) for it.
    """
    size = image_size // patch_size
    patch_ch = patch_size * patch_size * in_channels
    hidden = [int(h) for h in hidden_channels]
    enc_step = fore_step = 0
    for layer, ch in enumerate(hidden):
        below = patch_ch if layer == 0 else hidden[layer - 1]
        state = conv_flops(batch, ch, 4 * ch, state_kernel, size, size)
        enc_step += conv_flops(batch, below, 4 * ch, input_kernel, size, size) + state
        fore_step += state + (conv_flops(batch, below, 4 * ch, input_kernel, size, size)
                              if layer or forecaster_input == "prediction" else 0)
    head = conv_flops(batch, sum(hidden), patch_ch, head_kernel, size, size)
    if structure == "stack":
        return (input_frames + output_frames - 1) * (enc_step + head)
    return input_frames * enc_step + output_frames * (fore_step + head)


def training_flops(forward_flops):
    """FLOPs of one training step: forward + input gradient + weight gradient."""
    return 3 * forward_flops


def matmul_flops(m, k, n):
    return 2 * m * k * n


# forward FLOPs of one sample of each registered model, from its config
FORWARD_FLOPS = {
    "tinydarknet": lambda cfg: tinydarknet_forward_flops(1, cfg.image_size, cfg.num_classes,
                                                         cfg.in_channels),
    "convlstm": lambda cfg: convlstm_forward_flops(
        1, cfg.image_size, cfg.in_channels, cfg.patch_size, tuple(cfg.hidden_channels),
        cfg.input_kernel, cfg.state_kernel, cfg.input_frames, cfg.output_frames,
        cfg.forecaster_input, cfg.structure, cfg.head_kernel),
}
