"""Zeppelin analysis notes and the refresh-retrain job (not built yet: see zeppelin/README.md)."""
