"""Spinlock core: a pure library (no Dagster) for random neural-operator datasets.

Config schema, Sobol sampling, initial conditions, operators, rollouts, features and the HDF5
layout. Usable from a notebook on its own.
"""

__version__ = "0.1.0"
