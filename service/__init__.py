"""Ly's HTTP service: OGC API - Features over the shelter register."""
