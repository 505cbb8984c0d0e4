"""Ly's benchmark harness: Ly against tipg and pygeoapi on one national-scale data set.

`make bench` (or `.venv/bin/python -m bench.run`) builds the data set, sets up the peers,
runs every scenario and writes `bench/results/`. See bench/README.md.
"""
