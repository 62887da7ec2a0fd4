"""Secrets stay out of everything the pipeline writes or prints: manifests, logs, reports, messages.

Configuration entries whose key names a secret (Spark's own ``spark.redaction.regex``) are recorded as
REDACTED; text (log records, error lines, the command line a lock records) has the values of the AWS
credential variables in the environment and ``key=value`` / ``key: value`` pairs with such keys masked.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

SECRET_KEY = re.compile(r"(?i)secret|password|token|access[.]key")
REDACTED = "*** (redacted)"
ENV_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_ASSIGNED = re.compile(r"(?i)([\w.\-]*(?:secret|password|token|access[._]?key)[\w.\-]*['\"]?\s*[:=]\s*['\"]?)"
                       r"([^\s,;'\"}\]]+)")


def redacted(value: Any) -> Any:
    """``value`` with every mapping entry whose key names a secret replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and not isinstance(v, dict) else redacted(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def without_redacted(value: Any) -> Any:
    """A recorded (redacted) configuration made fit to be a layer again: redacted entries dropped, so
    that the secrets come from the current invocation (config file, flags, environment)."""
    if isinstance(value, dict):
        return {k: without_redacted(v) for k, v in value.items() if v != REDACTED}
    return value


def redact_text(text: str) -> str:
    """``text`` with the environment's AWS credential values and secret-keyed assignments masked."""
    for name in ENV_SECRETS:
        secret = os.environ.get(name, "")
        if len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    return _ASSIGNED.sub(lambda m: m.group(1) + REDACTED if m.group(2) != "***" else m.group(0), text)


class RedactSecrets(logging.Filter):
    """A handler filter: the formatted message (with any traceback text in it) redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
