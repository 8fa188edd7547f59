"""Offline datasets: global transitions stored once, per-agent views by index gather."""
from dzsc.datasets.dataset import OfflineDataset, load_dataset

__all__ = ["OfflineDataset", "load_dataset"]
