"""The attention-ablation orchestrator: presets -> Ray Tune sweeps -> Parquet -> report."""
