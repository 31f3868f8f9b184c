"""Typed errors raised by library code. Messages are written for people: they name the file or
argument at fault and say how to fix it. Only the CLI prints them."""

from __future__ import annotations


class SplatlabError(Exception):
    """Base class of every error splatlab raises on purpose."""


class DataError(SplatlabError, ValueError):
    """A dataset, image, pose file or scene file is missing, unreadable or inconsistent."""


class SfMError(DataError):
    """Structure-from-motion could not produce a usable reconstruction."""


class CheckpointError(SplatlabError):
    """A run directory or checkpoint is missing or incompatible."""


class WeightsNotFoundError(SplatlabError, FileNotFoundError):
    """Pretrained weights are not on this machine; the message says what to download and where."""
