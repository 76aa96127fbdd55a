"""Training data and video generation models for the MLflow projects (``mlflow_projects/``): gold at a
pinned Delta version as tensors, trainer exports and mixes, the model backends, checkpoints."""
