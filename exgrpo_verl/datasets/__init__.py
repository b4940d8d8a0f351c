"""Dataset loaders for the twelve datasets, all producing :class:`Record`."""

from exgrpo_verl.datasets.record import Record

__all__ = ["Record"]
