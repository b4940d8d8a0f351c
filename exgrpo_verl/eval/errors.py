"""Errors the eval and report commands turn into a one-line message and a non-zero exit."""

from __future__ import annotations


class EvalError(Exception):
    """Bad input or setup that stops an eval before (or without) losing finished work."""


class BackendNotInstalledError(EvalError):
    """The chosen backend's library is missing; the message names the pip extra to install."""


class ModelNotFoundError(EvalError):
    """The model path does not exist, or the endpoint does not serve the model."""


class StaleGenerationsError(EvalError):
    """A generations file was written with other settings or other prompts than this run's."""
