"""Video metrics (OpenSTL conventions, Shi et al.'s cross-entropy) and top-k accuracy."""
import math

import numpy as np
import pytest

from src.metrics import PSNR_CAP, VideoMetricAccumulator, topk_accuracy, video_metrics


def frames(n=2, t=3, c=1, h=16, w=16, seed=0):
    return np.random.default_rng(seed).random((n, t, c, h, w))


def test_constant_offset_mse_mae_psnr():
    true = frames() * 0.8
    pred = true + 0.1
    m = video_metrics(pred, true)
    pixels = 16 * 16
    assert m["mse"] == pytest.approx(pixels * 0.01)  # summed over a frame's pixels
    assert m["mae"] == pytest.approx(pixels * 0.1)
    assert m["mse_per_frame"] == pytest.approx([pixels * 0.01] * 3)
    assert m["psnr"] == pytest.approx(20.0)  # -10 log10(0.01)
    assert m["num_sequences"] == 2


def test_identical_frames():
    true = frames()
    m = video_metrics(true, true)
    assert m["mse"] == 0 and m["mae"] == 0
    assert m["ssim"] == pytest.approx(1.0)
    assert m["psnr"] == PSNR_CAP
    assert video_metrics(frames(c=3), frames(c=3))["ssim"] == pytest.approx(1.0)
    assert video_metrics(frames(seed=1), true)["ssim"] < 0.5


def test_ssim_openstl_is_skimage_ssim_with_range_2():
    from skimage.metrics import structural_similarity
    true = frames(n=1, t=2)
    pred = np.clip(true + np.random.default_rng(4).normal(0, 0.1, true.shape), 0, 1)
    m = video_metrics(pred, true)
    expected = np.mean([structural_similarity(pred[0, j, 0], true[0, j, 0], data_range=2.0)
                        for j in range(2)])
    assert m["ssim_openstl"] == pytest.approx(expected)
    # range 2 makes the stabilising constants C1, C2 four times larger: a higher SSIM
    assert m["ssim_openstl"] > m["ssim"]
    assert video_metrics(true, true)["ssim_openstl"] == pytest.approx(1.0)


def test_per_frame_metrics_follow_each_frame():
    """Frame j predicted with noise growing with j: the per-frame MSE rises and SSIM falls with j,
    each equal to the metric of that frame alone."""
    from skimage.metrics import structural_similarity
    true = frames(n=3, t=4) * 0.5
    noise = np.random.default_rng(5).normal(0, 1, true.shape)
    pred = np.clip(true + noise * np.array([0.0, 0.05, 0.1, 0.2])[None, :, None, None, None], 0, 1)
    m = video_metrics(pred, true)
    assert np.all(np.diff(m["mse_per_frame"]) > 0) and m["mse_per_frame"][0] == 0
    assert np.all(np.diff(m["ssim_per_frame"]) < 0) and m["ssim_per_frame"][0] == pytest.approx(1)
    expected = np.mean([structural_similarity(pred[i, 2, 0], true[i, 2, 0], data_range=1.0)
                        for i in range(3)])
    assert m["ssim_per_frame"][2] == pytest.approx(expected)


def test_cross_entropy_per_sequence():
    true = (frames() > 0.5).astype(np.float64)
    half = np.full_like(true, 0.5)
    pixels_per_sequence = 3 * 16 * 16
    assert video_metrics(half, true)["cross_entropy"] == pytest.approx(
        pixels_per_sequence * math.log(2))
    # exact 0/1 predictions are clipped to [1e-7, 1 - 1e-7]: finite and ~ pixels * 1e-7
    ce = video_metrics(true, true)["cross_entropy"]
    assert 0 < ce < pixels_per_sequence * 2e-7
    # the worst prediction is finite as well
    assert math.isfinite(video_metrics(1.0 - true, true)["cross_entropy"])


def test_accumulator_matches_one_shot():
    pred, true = frames(n=5, seed=2), frames(n=5, seed=3)
    acc = VideoMetricAccumulator()
    acc.update(pred[:2], true[:2])
    acc.update(pred[2:], true[2:])
    streamed, whole = acc.result(), video_metrics(pred, true)
    for key in ("mse", "mae", "ssim", "ssim_openstl", "psnr", "cross_entropy"):
        assert streamed[key] == pytest.approx(whole[key])
    assert streamed["mse_per_frame"] == pytest.approx(whole["mse_per_frame"])
    assert np.mean(whole["mse_per_frame"]) == pytest.approx(whole["mse"])
    assert streamed["ssim_per_frame"] == pytest.approx(whole["ssim_per_frame"])
    assert np.mean(whole["ssim_per_frame"]) == pytest.approx(whole["ssim"])
    with pytest.raises(ValueError):
        VideoMetricAccumulator().result()
    with pytest.raises(ValueError, match="same shape"):
        video_metrics(pred[:, :2], true)


def test_topk_accuracy():
    logits = np.array([[0.1, 0.7, 0.2],
                       [0.5, 0.3, 0.2],
                       [0.2, 0.3, 0.5],
                       [0.6, 0.1, 0.3]])
    labels = np.array([1, 1, 0, 2])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(0.25)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(0.75)
    assert topk_accuracy(logits, labels, 3) == pytest.approx(1.0)
    assert topk_accuracy(logits, labels, 10) == pytest.approx(1.0)


def test_a_model_that_predicts_blank_frames_is_flagged():
    from src.tasks.video_prediction import VideoEvaluator
    rng = np.random.default_rng(0)
    inputs = rng.random((2, 3, 1, 16, 16), dtype=np.float32)
    targets = (rng.random((2, 3, 1, 16, 16)) > 0.8).astype(np.float32)
    collapsed, working = VideoEvaluator(), VideoEvaluator()
    collapsed.update(inputs, np.full(targets.shape, -12.0, np.float32), targets)
    working.update(inputs, np.where(targets > 0, 3.0, -3.0).astype(np.float32), targets)
    result = collapsed.result()
    assert "predicts blank frames" in result["warning"] and "--loss bce" in result["warning"]
    assert result["model"]["mse"] == pytest.approx(result["blank_frames"]["mse"], rel=1e-3)
    assert "warning" not in working.result() and working.result()["max_prediction"] > 0.9
