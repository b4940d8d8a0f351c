"""Dataset loaders for the twelve datasets, all producing :class:`Record`."""

from exgrpo_verl.datasets.errors import DatasetFileError, DatasetRowError
from exgrpo_verl.datasets.loaders import DATASETS, LoadResult, dataset_spec, load_records
from exgrpo_verl.datasets.record import Record

__all__ = ["DATASETS", "DatasetFileError", "DatasetRowError", "LoadResult", "Record", "dataset_spec", "load_records"]
