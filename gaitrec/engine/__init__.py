"""Training and testing: a short loop (trainer.py) with small helpers for checkpoints and inference."""
