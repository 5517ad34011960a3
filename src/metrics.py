"""Evaluation metrics (numpy + scikit-image).

Video prediction (arrays (N, T, C, H, W) with values in [0, 1]), OpenSTL conventions:
- MSE / MAE: squared / absolute error **summed over the pixels of a frame** (C*H*W), averaged over
  frames and samples (OpenSTL's ConvLSTM on Moving MNIST: MSE 29.80, MAE 90.64).
- SSIM: ``skimage.metrics.structural_similarity(..., data_range=1.0)`` per frame (default 7x7
  uniform window; channel_axis for C > 1), averaged over frames and samples: the correct range.
- ssim_openstl: the same with ``data_range=2.0``. OpenSTL called skimage without ``data_range`` on
  an skimage that then assumed the range of a float image, [-1, 1], i.e. 2; its published table
  (ConvLSTM SSIM 0.9288 on Moving MNIST) is therefore comparable with ``ssim_openstl``, which reads
  0.01-0.03 higher than ``ssim`` for the same predictions.
- PSNR: ``skimage.metrics.peak_signal_noise_ratio(..., data_range=1.0)`` per frame, averaged.
  A frame predicted exactly (MSE 0, PSNR infinite) counts as ``PSNR_CAP`` = 100 dB so that the
  average stays finite (OpenSTL returns inf there).
- cross_entropy: Shi et al.'s per-sequence cross-entropy, -sum(t log p + (1 - t) log(1 - p)) over
  all predicted pixels of a sequence (p clipped to [1e-7, 1 - 1e-7]), averaged over sequences.
- mse_per_frame / ssim_per_frame: MSE and SSIM (as above) of each predicted time step, averaged
  over samples: where along the forecast a prediction fades.

Classification: ``topk_correct`` / ``topk_accuracy``.
"""
import numpy as np

# scikit-image is imported by the functions that use it: its metrics pull in scipy.stats (~0.4 s
# per process), which a classification run never needs

PSNR_CAP = 100.0
PROB_EPS = 1e-7


def _check(pred, true):
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 5:
        raise ValueError(f"video metrics expect two (N, T, C, H, W) arrays of the same shape, got "
                         f"{pred.shape} and {true.shape}")
    return pred, true


OPENSTL_SSIM_RANGE = 2.0


def _frame_ssim(p, t, data_range=1.0):
    """SSIM of one (C, H, W) frame."""
    from skimage.metrics import structural_similarity
    if p.shape[0] == 1:
        return structural_similarity(p[0], t[0], data_range=data_range)
    return structural_similarity(p, t, data_range=data_range, channel_axis=0)


def _frame_psnr(p, t):
    if np.array_equal(p, t):
        return PSNR_CAP
    from skimage.metrics import peak_signal_noise_ratio
    return min(peak_signal_noise_ratio(t, p, data_range=1.0), PSNR_CAP)


class VideoMetricAccumulator:
    """Streaming video metrics: call ``update(pred, true)`` per batch, then ``result()``."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.num_sequences = 0
        self.num_frames = 0
        self.sq_err = 0.0
        self.abs_err = 0.0
        self.ssim = 0.0
        self.ssim_openstl = 0.0
        self.psnr = 0.0
        self.cross_entropy = 0.0
        self.sq_err_per_step = None
        self.ssim_per_step = None

    def update(self, pred, true):
        """Add a batch; ``pred`` are probabilities (apply sigmoid to logits first)."""
        pred, true = _check(pred, true)
        n, t = pred.shape[:2]
        diff = pred - true
        sq_per_step = (diff ** 2).sum(axis=(2, 3, 4)).sum(axis=0)  # (T,) summed over samples
        if self.sq_err_per_step is None:
            self.sq_err_per_step = np.zeros(t)
            self.ssim_per_step = np.zeros(t)
        elif len(self.sq_err_per_step) != t:
            raise ValueError(f"batch has {t} frames, earlier batches had "
                             f"{len(self.sq_err_per_step)}")
        self.sq_err_per_step += sq_per_step
        self.sq_err += float(sq_per_step.sum())
        self.abs_err += float(np.abs(diff).sum())
        p = np.clip(pred, PROB_EPS, 1.0 - PROB_EPS)
        self.cross_entropy += float(-(true * np.log(p) + (1.0 - true) * np.log(1.0 - p)).sum())
        for i in range(n):
            for j in range(t):
                ssim = _frame_ssim(pred[i, j], true[i, j])
                self.ssim += ssim
                self.ssim_per_step[j] += ssim
                self.ssim_openstl += _frame_ssim(pred[i, j], true[i, j], OPENSTL_SSIM_RANGE)
                self.psnr += _frame_psnr(pred[i, j], true[i, j])
        self.num_sequences += n
        self.num_frames += n * t

    def result(self):
        """Dict with mse, mae, ssim, ssim_openstl, psnr, cross_entropy, mse_per_frame and
        ssim_per_frame (lists, one value per predicted frame), num_sequences."""
        if self.num_frames == 0:
            raise ValueError("VideoMetricAccumulator.result() called before any update()")
        frames, seqs = self.num_frames, self.num_sequences
        return {
            "mse": self.sq_err / frames,
            "mae": self.abs_err / frames,
            "ssim": self.ssim / frames,
            "ssim_openstl": self.ssim_openstl / frames,
            "psnr": self.psnr / frames,
            "cross_entropy": self.cross_entropy / seqs,
            "mse_per_frame": (self.sq_err_per_step / seqs).tolist(),
            "ssim_per_frame": (self.ssim_per_step / seqs).tolist(),
            "num_sequences": seqs,
        }


def video_metrics(pred, true):
    """Metrics of one (N, T, C, H, W) pair of arrays in [0, 1] (see the module docstring)."""
    acc = VideoMetricAccumulator()
    acc.update(pred, true)
    return acc.result()


def topk_correct(logits, labels, k=1):
    """How many rows of ``logits`` (N, classes) have their label among the k largest scores.

    Ties are broken by class index (stable sort), so the result is deterministic."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"topk_accuracy expects logits (N, classes) and labels (N,), got "
                         f"{logits.shape} and {labels.shape}")
    if len(labels) == 0:
        return 0
    k = min(int(k), logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def topk_accuracy(logits, labels, k=1):
    """Fraction of rows of ``logits`` (N, classes) whose label is among the k largest scores
    (:func:`topk_correct` / N; 0.0 for no rows)."""
    count = len(np.asarray(labels).reshape(-1))
    correct = topk_correct(logits, labels, k)
    return correct / count if count else 0.0
