"""Exceptions for mistakes a user can fix. The CLI prints their message and exits with code 2."""


class UserError(Exception):
    """A mistake in input, configuration or invocation; the message says where and what to do."""


class ConfigError(UserError):
    """An invalid configuration value; the message names the key and where it came from."""


class InputDataError(UserError):
    """Input data that cannot be used; the message names the file, line and field."""


class StageError(UserError):
    """A stage that cannot run in the current state of the run directory."""


class RunFailed(Exception):
    """Work that failed for a reason other than a user mistake (an EMR step, an AWS service error);
    the CLI prints its one-line message and exits with code 1."""
