"""Argparse types built on :mod:`yolos.validate`: a bad value is refused by the parser with the
check's own message (``argument --threshold: expected a number between 0 and 1, got '2'``)."""
from __future__ import annotations

import argparse

from .. import validate


def typed(check, **kwargs):
    """An argparse type from a :mod:`yolos.validate` check (its message becomes argparse's)."""
    def parse(text: str):
        try:
            return check(text, "", **kwargs)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).lstrip(": ")) from None

    parse.__name__ = check.__name__  # argparse names the type in some messages
    return parse


threshold = typed(validate.threshold)
positive_int = typed(validate.positive_int)
non_negative_int = typed(validate.non_negative_int)
positive_float = typed(validate.positive_float)
non_negative_float = typed(validate.non_negative_float)
image_side = typed(validate.image_side)
fraction = typed(validate.fraction)
port = typed(validate.port)
dtype = typed(validate.dtype)
