"""The `ly` command line."""
