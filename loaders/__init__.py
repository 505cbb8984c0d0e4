"""Ly's loaders: reference data, demo data, imports and exports."""
