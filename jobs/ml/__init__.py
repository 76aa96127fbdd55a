"""The MLflow projects' entry points: ``mlflow_projects/*/MLproject`` run ``python -m facevid.jobs.ml.<name>``."""
