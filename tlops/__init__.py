"""tlops: transfer learning from pretrained models, as a governed pipeline.

The core (this package) is plain Python: it never imports Prefect or MLflow.
"""

__version__ = "0.1.0"
