"""exgrpo_verl: Explanatory Inversion probes, SFT warm-up data and ExGRPO for verl."""

__version__ = "0.1.0"
