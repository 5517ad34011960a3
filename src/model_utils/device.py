"""Device, execution mode and data-parallel set-up (MindSpore 2.10 APIs)."""
import os

import mindspore as ms
from mindspore.communication import get_group_size, get_rank, init
from mindspore.context import ParallelMode

from src.model_utils.errors import UserError

DEVICES = ("CPU", "GPU", "Ascend")


def setup_device(device_target, device_id=0, mode="GRAPH", distribute=False):
    """Select the device, graph/pynative mode and (optionally) data parallel.

    Returns ``(rank, group_size)``; ``(0, 1)`` for a standalone run. Under a launcher (msrun,
    mpirun, an Ascend rank table) ``distribute=True`` initialises communication and sets
    DATA_PARALLEL with mean gradients; the device id then comes from the launcher's environment.
    """
    if device_target not in DEVICES:
        raise UserError(f"device_target must be one of {', '.join(DEVICES)}, got '{device_target}'")
    if distribute:
        device_id = int(os.environ.get("DEVICE_ID", os.environ.get("LOCAL_RANK", device_id)))
    try:
        ms.set_device(device_target, device_id if device_target != "CPU" else None)
    except (RuntimeError, ValueError) as exc:
        # A RuntimeError also comes when the device is already set (a kernel ran earlier in this
        # process): nothing to change then, as long as it is the device asked for.
        same = (isinstance(exc, RuntimeError) and ms.get_context("device_target") == device_target
                and (device_target == "CPU" or ms.get_context("device_id") == device_id))
        if not same:
            raise UserError(f"cannot use device_target={device_target}: {str(exc).splitlines()[0]} "
                            "(install the MindSpore build for that device, or pass --device_target CPU)") from None
    ms.set_context(mode=ms.GRAPH_MODE if mode.upper() == "GRAPH" else ms.PYNATIVE_MODE)
    if not distribute:
        return 0, 1
    try:
        init()
    except RuntimeError as exc:  # not started by a launcher: MindSpore finds no cluster to join
        raise UserError(f"run_distribute needs a launcher: start train.py with "
                        "scripts/run_distribute_train_msrun.sh (or msrun, mpirun, an Ascend rank "
                        f"table), or pass --run_distribute false ({str(exc).splitlines()[0][:120]})") from None
    rank, group_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return rank, group_size
