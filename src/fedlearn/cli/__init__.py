"""The ``fedlearn`` command, a module per command group.

- :mod:`~fedlearn.cli.simulate`: ``simulate``, a federation on this machine;
- :mod:`~fedlearn.cli.robustness`: ``robustness``, a grid of simulations under attack;
- :mod:`~fedlearn.cli.deployment`: ``coordinator``, ``node``, ``run``, ``token`` and ``identity``;
- :mod:`~fedlearn.cli.operations`: ``nodes`` (in the store) and ``runs`` (on a coordinator);
- :mod:`~fedlearn.cli.analytics`: ``analytics create|join|inspect|fit|remote``;
- :mod:`~fedlearn.cli.certs`: ``certs init|issue``;
- :mod:`~fedlearn.cli.root`: the app that mounts them, ``version`` and ``--version``.

Every group reports errors through :mod:`~fedlearn.cli.reporting`: one line on stderr and the
error's exit code. This package is the last part of fedlearn: it may import every other part, and
nothing imports it.
"""

from fedlearn.cli.root import app, main

__all__ = ["app", "main"]
