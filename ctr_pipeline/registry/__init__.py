"""The model registry: immutable versions, aliases (champion, challenger) and their history.

:mod:`.core` holds the rules (pure), :mod:`.store` the layout on storage, :mod:`.bundle` what a model is
(from a run directory or a version), :mod:`.cli` the ``ctr-pipeline models`` commands.
"""
