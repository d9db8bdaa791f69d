"""Offline generators of the synthetic Long Range Arena tasks: ListOps and Pathfinder/Path-X.

``scripts/prepare_data.py listops|pathfinder`` drives them and writes the LRA release layout,
which :mod:`ssm.data.listops` and :mod:`ssm.data.pathfinder` read like the official download.
"""
