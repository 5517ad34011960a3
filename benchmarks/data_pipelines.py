"""The ``data`` section of benchmarks/benchmark.py: the repo's training pipelines
(``src.data.create_dataset``) on synthetic files in the real formats -- a 10,000-record CIFAR-10
binary file (``Cifar10Dataset`` insists on that size), an ImageFolder of ~500x375 JPEGs, Moving
MNIST generated from a synthetic MNIST idx file -- and the ratio to the training rate each feeds.
"""
import os
import shutil
import tempfile
import time

import numpy as np


def write_cifar10(folder, records=10000, seed=0):
    """One CIFAR-10 binary file in the real format (1 label byte + R, G, B planes)."""
    os.makedirs(folder, exist_ok=True)
    rec = np.random.default_rng(seed).integers(0, 256, (records, 1 + 3 * 32 * 32), dtype=np.uint8)
    rec[:, 0] %= 10
    rec.tofile(os.path.join(folder, "data_batch_1.bin"))
    return folder


def write_jpeg_folder(root, classes, per_class, size=(500, 375), seed=0):
    """ImageFolder ``root/train/<class>/*.JPEG`` of photo-like synthetic JPEGs (smooth + texture)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    for c in range(classes):
        folder = os.path.join(root, "train", f"n{c:08d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            f = rng.uniform(0.005, 0.05, 3)
            img = np.stack([127 + 100 * np.sin(xx * f[k] + yy * f[(k + 1) % 3] + rng.uniform(0, 6))
                            for k in range(3)], -1) + rng.normal(0, 12, (size[1], size[0], 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                os.path.join(folder, f"img_{i:05d}.JPEG"), quality=90)
    return root


def pipeline_rate(dataset, batch_size):
    """Samples/s of iterating a batched pipeline after its first batch (start-up reported apart)."""
    it = dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
    start = time.perf_counter()
    next(it)
    first = time.perf_counter()
    n = sum(1 for _ in it)
    return {"startup_s": first - start, "batches": n,
            "samples_per_s": n * batch_size / max(time.perf_counter() - first, 1e-9)}


def run_data(quick, train_rows, log=print):
    """Rows of pipeline samples/s, each beside the fastest MindSpore training row it feeds."""
    fastest = {}
    for r in train_rows:
        if "error" not in r and r["framework"] == "mindspore" and \
                r["samples_per_s"] > fastest.get(r["name"], {}).get("samples_per_s", 0):
            fastest[r["name"]] = r
    from src.data import create_dataset
    from src.data.classification import default_workers
    from src.data.mnist_idx import write_idx_images
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    rows = []
    try:
        folder = write_cifar10(os.path.join(tmp, "cifar-10-batches-bin"))
        n = 640 if quick else 10000
        log(f"data cifar10: {n} records ...")
        dset = create_dataset("cifar10", folder, "train", 32, image_size=32, num_samples=n)
        rows.append(dict(name="cifar10_train_32", feeds="tinydarknet_32", batch_size=32,
                         workers=default_workers(), **pipeline_rate(dset, 32)))
        classes, per_class = (2, 40) if quick else (8, 80)
        log(f"data imagefolder: writing {classes * per_class} JPEGs 500x375 ...")
        root = write_jpeg_folder(os.path.join(tmp, "imagenet"), classes, per_class)
        dset = create_dataset("imagefolder", root, "train", 32, image_size=224)
        rows.append(dict(name="imagefolder_train_224", feeds="tinydarknet_224", batch_size=32,
                         workers=default_workers(), **pipeline_rate(dset, 32)))
        digits = np.zeros((2000, 28, 28), np.uint8)
        digits[:, 6:22, 10:18] = np.random.default_rng(0).integers(100, 256, (2000, 16, 8), dtype=np.uint8)
        os.makedirs(os.path.join(tmp, "mnist"))
        write_idx_images(os.path.join(tmp, "mnist", "train-images-idx3-ubyte"), digits)
        seqs, mbs = (32, 4) if quick else (400, 8)
        log(f"data moving_mnist: {seqs} sequences ...")
        dset = create_dataset("moving_mnist", os.path.join(tmp, "mnist"), "train", mbs, num_sequences=seqs)
        rows.append(dict(name="moving_mnist_train", feeds="convlstm_cpu", batch_size=mbs, workers=1,
                         **pipeline_rate(dset, mbs)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        fed = fastest.get(row["feeds"])
        if fed:
            row.update(train_samples_per_s=fed["samples_per_s"], train_conv_impl=fed["conv_impl"],
                       ratio_to_train=row["samples_per_s"] / fed["samples_per_s"])
    return rows
