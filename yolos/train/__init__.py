"""Training: Hungarian matcher, set loss, optimizer, recipes, builders, data order, run log,
checkpoints, and the loop (fit).

Kept import-light on purpose: import the submodules you need (``yolos.train.criterion``,
``yolos.train.loop``, ...); nothing is imported eagerly here.
"""
