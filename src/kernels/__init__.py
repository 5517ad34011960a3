"""The repository's CPU kernels: sources, build, probes, ISA choice and the policy, in one package.

The networks (``src/models``) build plain layers (:mod:`src.kernels.layers`) with plain sizes;
this package decides, once per run, which kernel each of them runs, and imports nothing from
``src/models``, ``src/tasks`` or the trainer.

* ``csrc/``: the C++ kernels (oneDNN's direct convolution, fused BatchNorm + leaky ReLU and
  2x2 max-pool, fused LSTM gates) and their thread pool;
* :mod:`~src.kernels.build`: compiled once per machine into the cache (file lock, keyed by
  sources, compiler version, flags, CPU ISA and oneDNN version; a failure is remembered);
* :mod:`~src.kernels.onednn_conv`, :mod:`~src.kernels.fused_layers`,
  :mod:`~src.kernels.lstm_gates`: the ``ops.Custom`` primitives on those libraries;
* :mod:`~src.kernels.layers`: ``Conv2d``, ``MaxPool2d``, ``LeakyReLU`` and the
  :class:`~src.kernels.layers.KernelSite` protocol a layer with a kernel choice follows;
* :mod:`~src.kernels.tuning`: this machine, the per-machine cache, the oneDNN ISA cap;
* :mod:`~src.kernels.probe`: the timing child processes;
* :mod:`~src.kernels.plan`: the choices of a run, measured, recorded in its output folder
  (``kernel_choices.json``) and applied to the network.

``python -m src.kernels`` prints this machine's choices, their measured times, the compiler and
the cache location. Importing this package costs nothing (standard library only).
"""
