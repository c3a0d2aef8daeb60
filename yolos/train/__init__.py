"""Training: Hungarian matcher, set loss, optimizer, distributed helpers, checkpoints, loop.

Kept import-light on purpose: import the submodules you need (``yolos.train.criterion``,
``yolos.train.loop``, ...); nothing is imported eagerly here.
"""
