"""Exceptions that carry a user-facing message naming the file, image or field at fault."""


class YolosError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class CheckpointError(YolosError, ValueError):
    """A checkpoint cannot be read, is unsafe, or does not fit the model."""


class ImageError(YolosError, ValueError):
    """A file or array is not a usable image."""


class DatasetError(YolosError, ValueError):
    """An annotation file, image or box in a dataset is invalid."""


class PredictionError(YolosError, ValueError):
    """The model's outputs for an image are not finite numbers; the message names the image."""
