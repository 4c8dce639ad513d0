"""Data pipeline: files -> dataset (lists sequences) -> sampler -> collate (frames, transforms) -> model."""
