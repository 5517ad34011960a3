"""Task registry: ``create_task(cfg)`` gives the task family of the configured model.

Which family a model belongs to is its ``ModelSpec.task`` (``src/models/__init__.py``).
"""
from src.models import get_model_spec
from src.tasks.classification import ClassificationTask
from src.tasks.video_prediction import VideoPredictionTask

TASKS = {"classification": ClassificationTask, "video_prediction": VideoPredictionTask}


def create_task(cfg):
    """The task of ``cfg.model_name``, built with the config's values."""
    spec = get_model_spec(cfg.model_name)
    return TASKS[spec.task].from_config(cfg, spec.input_shape(cfg, 1)[1:])
