"""Device, execution mode and data-parallel set-up (MindSpore 2.10 APIs)."""
import os
import re

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
    except RuntimeError as exc:
        if os.environ.get("MS_ROLE"):  # started by a launcher: the cluster itself failed
            raise UserError(cluster_failure(exc)) from None
        # not started by a launcher: MindSpore finds no cluster to join
        raise UserError(f"run_distribute needs a launcher: start train.py with "
                        "scripts/run_distribute_train_msrun.sh (or msrun, mpirun, an Ascend rank "
                        f"table), or pass --run_distribute false ({str(exc).splitlines()[0][:120]})") from None
    rank, group_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return rank, group_size


def cluster_failure(exc):
    """One line for MindSpore's cluster giving up inside ``init()`` (on the scheduler, ``init()``
    lasts the whole job): the ranks it declared lost (node ids are global ranks under this repo's
    launchers), or its own first line."""
    text = str(exc)
    lost = re.search(r"Timed out node list is: \[const vector\]\{([0-9, ]+)\}", text)
    if lost:
        ranks = ", ".join(n for n in lost.group(1).replace(" ", "").split(",") if n)
        return (f"the cluster lost rank {ranks} (no heartbeat within MS_NODE_TIMEOUT: its process or "
                "host stopped); restart every host with --resume <newest checkpoint>")
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return f"the distributed job failed in MindSpore's cluster layer: {first}"
