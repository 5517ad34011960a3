"""Pictures: the learning curve of MSE and SSIM against minutes of training."""
import json

import numpy as np
import pytest

from src.visualize import save_learning_curve


def write_records(path, n=3):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"epoch": i + 1, "minutes": 1.5 * (i + 1), "mse": 150.0 - 10 * i,
                                "ssim": 0.3 + 0.1 * i,
                                "copy_last_frame": {"mse": 280.0, "ssim": 0.6},
                                "blank_frames": {"mse": 175.0, "ssim": 0.77}}) + "\n")


def test_learning_curve_writes_a_two_panel_png(tmp_path):
    from PIL import Image
    records = tmp_path / "learning_curve.jsonl"
    write_records(records)
    out = save_learning_curve(str(records), str(tmp_path / "curves" / "learning_curve.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] > 2 * image.shape[0]  # two panels side by side
    assert (image < 200).any()  # something was drawn


def test_learning_curve_of_an_empty_file_is_an_error(tmp_path):
    empty = tmp_path / "learning_curve.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no evaluation records"):
        save_learning_curve(str(empty), str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
