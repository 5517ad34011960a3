"""Export a trained checkpoint to MindIR, ONNX or AIR for deployment (what ``export.py`` runs).

    python export.py --config_path config/cifar10_config_cpu.yaml --ckpt_file CKPT \\
        [--file_name tinydarknet_cifar10] [--file_format MINDIR|ONNX|AIR] [--batch_size 1]

* The network is built with native convolutions (``create_model_from_config(cfg, export=True)``):
  the im2col path used for CPU training has no ONNX equivalent, and the weights are the same.
  The checkpoint is loaded strictly (every parameter, with its shape).
* Input shape: the task's ``input_shape(batch_size)``, from the config -- (N, in_channels, image_size,
  image_size) for Tiny-DarkNet, (N, input_frames, in_channels, image_size, image_size) for
  ConvLSTM. Nothing is hard-coded: ``--image_size 224`` exports a 224x224 classifier.
* ``--batch_size`` defaults to **1** here, not to the config's training batch: export.py passes
  ``SCRIPT_DEFAULTS`` (``{"batch_size": 1}``) to ``get_config`` (src/model_utils/config.py), so the
  priority is command line > export default (1) > YAML. Ascend 310 inference (ascend310_infer/)
  and the CPU runner (``python -m src.infer``) feed one sample per call.
* ``--file_name``: output path without extension (default: ``<model_name>``); the extension
  ``.mindir`` / ``.onnx`` / ``.air`` is added. The written path is printed.
* MINDIR is portable (CPU/GPU/Ascend, ``nn.GraphCell(ms.load(f))``, ascend310_infer). ONNX runs in
  onnxruntime (opset 11). AIR can only be produced with the Ascend backend
  (``--device_target Ascend``); elsewhere export.py stops with a one-line error.
* The file is written under a temporary name and renamed when complete: a full disk or a
  read-only folder is a one-line error and leaves neither a temporary nor a half-written file.
"""
import os

from src.model_utils.errors import UserError, writing

# export.py's defaults and help texts on top of the config (command line > these > YAML)
SCRIPT_DEFAULTS = {"batch_size": 1}
SCRIPT_HELPS = {"batch_size": "export.py: batch of the exported input (default 1 here, whatever the "
                              "YAML's training batch)"}
EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
AIR_ERROR = "AIR export needs Ascend (device_target Ascend); MINDIR is the portable format"


def export_path(cfg):
    """The file export writes: ``file_name`` (default ``model_name``) + the format's extension."""
    fmt = cfg.file_format.upper()
    if fmt not in EXTENSIONS:
        raise UserError(f"file_format must be one of {', '.join(EXTENSIONS)}, got '{cfg.file_format}'")
    name = cfg.file_name or cfg.model_name
    ext = EXTENSIONS[fmt]
    if name.lower().endswith(ext):
        name = name[: -len(ext)]
    return os.path.abspath(os.path.expanduser(name + ext))


def rename_onnx_io(path, input_name, output_name):
    """Name the ONNX graph's (single) input and output ``input_name`` / ``output_name`` in place.

    ``mindspore.onnx.export(..., output_names=...)`` writes an invalid graph when the network ends
    in a Reshape (the graph output names a value no node produces: onnxruntime refuses the file),
    so the file is exported with MindSpore's own names and renamed here, consumers included.
    """
    import onnx
    model = onnx.load(path)
    graph = model.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for value in list(graph.input[:1]) + list(graph.output[:1]):
        value.name = renames[value.name]
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    onnx.checker.check_model(model)
    onnx.save(model, path)


def export_network(cfg, log=print):
    """Build the configured network with native convs, load ``cfg.ckpt_file`` strictly and export
    it with the task's input shape at ``cfg.batch_size``. Returns the written file path."""
    fmt = cfg.file_format.upper()
    path = export_path(cfg)
    if fmt == "AIR" and cfg.device_target != "Ascend":
        raise UserError(AIR_ERROR)
    if not cfg.ckpt_file:
        raise UserError("no checkpoint given: pass --ckpt_file FILE.ckpt (or a checkpoint folder)")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {cfg.batch_size}")

    import numpy as np
    import mindspore as ms
    from src.checkpoint import load_network
    from src.model_utils.device import setup_device
    from src.tasks import create_task

    setup_device(cfg.device_target, cfg.device_id, cfg.mode)
    net, meta = load_network(cfg, cfg.ckpt_file, export=True)
    shape = create_task(cfg).input_shape(cfg.batch_size)
    dummy = ms.Tensor(np.zeros(shape, np.float32))
    ext = EXTENSIONS[fmt]
    tmp = path[: -len(ext)] + ".tmp" + ext  # MindSpore adds the extension to MINDIR/AIR names
    with writing(path, partial=[tmp]):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ms.export(net, dummy, file_name=tmp[: -len(ext)], file_format=fmt)
        if not os.path.isfile(tmp):
            raise UserError(f"export to {fmt} did not write {path}")
        if fmt == "ONNX":
            rename_onnx_io(tmp, "input", "output")
        os.replace(tmp, path)
    if log:
        log(f"exported {cfg.model_name} ({meta['ckpt_file']}) as {fmt}, input {tuple(shape)} float32")
        log(path)
    return path
