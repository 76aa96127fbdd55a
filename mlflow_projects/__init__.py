"""The MLflow project folders (``finetune/``, ``evaluate/``), shipped in the wheel so that
``facevid train`` / ``facevid evaluate`` find them on a cluster (``importlib.resources``)."""
