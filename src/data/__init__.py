"""Dataset factory: ``create_dataset(name, data_path, split, batch_size, **kwargs)``."""
import os

DATASETS = ("cifar10", "imagenet", "imagefolder", "moving_mnist")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def create_dataset(name, data_path, split, batch_size, **kwargs):
    """Batched pipeline of ``split`` ('train' or 'eval'). Extra kwargs go to the dataset builder:
    image_size, shuffle, num_parallel_workers, shard_id, num_shards, num_samples, augment, ..."""
    if not data_path:
        raise FileNotFoundError(f"no data_path given for the {name} data set: pass --data_path DIR")
    data_path = os.path.abspath(os.path.expanduser(data_path))
    if name == "cifar10":
        from src.data.classification import create_cifar10_dataset
        return create_cifar10_dataset(data_path, split, batch_size, **kwargs)
    if name in ("imagenet", "imagefolder"):
        from src.data.classification import create_imagefolder_dataset
        return create_imagefolder_dataset(data_path, split, batch_size, **kwargs)
    if name == "moving_mnist":
        from src.data.moving_mnist import create_moving_mnist_dataset
        return create_moving_mnist_dataset(data_path, split, batch_size, **kwargs)
    raise ValueError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")


def dataset_kwargs(cfg, split, class_names=None):
    """Builder arguments for ``split`` from a config (the keys each data set understands).
    ``class_names`` (e.g. stored in a checkpoint) replace the config's as the label order."""
    num_samples = (cfg.num_samples if split == "train" else cfg.eval_num_samples) or None
    common = dict(num_parallel_workers=cfg.num_parallel_workers or None, num_samples=num_samples)
    if cfg.dataset == "moving_mnist":
        common.pop("num_samples")
        kwargs = dict(common, input_frames=cfg.input_frames, output_frames=cfg.output_frames,
                      image_size=cfg.image_size, num_digits=cfg.num_digits, seed=cfg.seed)
        if split == "train":
            return dict(kwargs, num_sequences=cfg.train_sequences,
                        resample_each_epoch=cfg.resample_each_epoch)
        if split == "val":
            return dict(kwargs, num_sequences=cfg.val_sequences,
                        seed=cfg.seed if cfg.val_seed < 0 else cfg.val_seed)
        return dict(kwargs, num_sequences=cfg.eval_num_samples or None)
    kwargs = dict(common, image_size=cfg.image_size, augment=cfg.augment, hflip=cfg.hflip)
    if cfg.dataset == "cifar10":
        kwargs["num_classes"] = cfg.num_classes
    else:
        kwargs["class_names"] = class_names or cfg.get("class_names") or None
        kwargs["min_crop_scale"] = cfg.min_crop_scale
    return kwargs


def check_validation_split(cfg, instead="--eval_interval 0"):
    """The config has validation sequences (Moving MNIST's, ``val_sequences`` >= 1); one-line
    error otherwise, naming ``instead``, the option that does without them (training's
    ``--eval_interval 0``; eval.py checks before loading its checkpoint, with ``--eval_split eval``)."""
    from src.model_utils.errors import UserError
    if cfg.dataset != "moving_mnist":
        raise UserError(f"{cfg.dataset} has no validation split (only moving_mnist generates "
                        f"one): pass {instead}")
    if cfg.val_sequences < 1:
        raise UserError("validation needs validation sequences: pass --val_sequences N (N >= 1) "
                        f"or {instead}")


def create_dataset_from_config(cfg, split, shard_id=None, num_shards=None, start_epoch=0,
                               data_path=None, batch_size=None, class_names=None):
    """The pipeline of ``split`` ('train', 'eval', or 'val': Moving MNIST's validation sequences
    generated from the training digits) as the config describes it; ``start_epoch`` (training
    resumed after that many epochs): the epochs that follow see the data in the order an
    uninterrupted run with the same seed sees it (generated data sets continue their per-epoch
    sequence; read ones start MindSpore's pipeline at that step, for an iterator over all epochs
    as ``Model.train(..., initial_epoch=)`` makes; their random augmentations are drawn anew).

    ``data_path``, ``batch_size`` and ``class_names`` replace the config's values for this call
    (the config itself is read-only): e.g. preprocess.py reads its own data folder at batch 1 in
    the label order stored in a checkpoint."""
    if split == "val":
        check_validation_split(cfg)
    default_path = cfg.data_path if split in ("train", "val") else (cfg.eval_data_path or cfg.data_path)
    path = data_path or default_path
    batch = batch_size or (cfg.batch_size if split == "train" else (cfg.eval_batch_size or cfg.batch_size))
    kwargs = dataset_kwargs(cfg, split, class_names)
    if num_shards and num_shards > 1:
        kwargs.update(shard_id=shard_id, num_shards=num_shards)
    if cfg.dataset == "moving_mnist" and split == "train":
        kwargs["start_epoch"] = start_epoch
    dataset = create_dataset(cfg.dataset, path, split, batch, **kwargs)
    if start_epoch and split == "train" and cfg.dataset != "moving_mnist":
        dataset.set_init_step(start_epoch * dataset.get_dataset_size())
    return dataset


def class_names_of(cfg):
    """Class names for a classification config (stored with checkpoints)."""
    if cfg.get("class_names"):
        return list(cfg.class_names)
    if cfg.dataset == "cifar10":
        return list(CIFAR10_CLASSES[: cfg.num_classes])
    if cfg.dataset in ("imagenet", "imagefolder") and cfg.data_path:
        from src.data.classification import image_folder_classes, split_folder
        return image_folder_classes(split_folder(os.path.abspath(cfg.data_path), "train"))
    return [str(i) for i in range(cfg.num_classes)]
