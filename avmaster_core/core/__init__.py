"""The small core (floor 1): the model beside the paper, its losses, configuration and experiments, the record
schema, the feature store and the data loaders. Imports only torch, numpy and h5py; nothing above it.
"""

__version__ = "0.1.0"  # the package version (pyproject.toml), here so that every floor can read it
