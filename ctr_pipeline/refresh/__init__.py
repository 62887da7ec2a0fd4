"""The refresh-retrain job a cron runs: challengers from a new window, a guarded promotion.

:mod:`.decide` holds the rules (pure): the window's identity, which challenger wins, whether it is
promoted, the summary line. :mod:`.job` runs it on Spark against a registry.
"""
