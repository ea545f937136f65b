from tlops.data.dataset import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
