"""Ly's data model: concepts, fields, tables, code lists and rules (GeoFA/FKG vocabulary)."""
