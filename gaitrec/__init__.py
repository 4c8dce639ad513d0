"""gaitrec: gait recognition with OpenGait-compatible configs, models, checkpoints and protocols."""
__version__ = "0.1.0"
