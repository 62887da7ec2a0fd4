"""The analysis notes: one source, rendered as Zeppelin notes and Jupyter notebooks (see README.md)."""
