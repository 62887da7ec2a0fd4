"""``ctr-pipeline refresh --registry REG --input NEW_WINDOW``: the command a cron runs.

Exit codes: 0 when the champion was promoted or kept (also when the window was already done, or another
refresh of the registry is running: it says who), 1 when the refresh failed (a window refused as
unreadable, a Spark failure: the champion stays), 2 for a mistake in the invocation. Every invocation
writes a log file, ``REGISTRY/refresh/logs/<UTC time>-<pid>.log`` (on S3 uploaded when it ends).
"""
from __future__ import annotations

import argparse
import logging
import traceback
from typing import Any

from ..errors import InputDataError, RunFailed, UserError
from ..invocation import invocation_log

log = logging.getLogger("ctr_pipeline.refresh")


def add_parser(sub: Any) -> None:
    from ..cli import _add_config_flags

    text = "refresh the registry's champion on a new window: challengers, holdout bootstrap, guarded promotion"
    p = sub.add_parser("refresh", help=text, description=text)
    _add_config_flags(p)
    p.add_argument("--registry", required=True, metavar="REGISTRY", help="local path or s3:// prefix with a champion")
    p.add_argument("--force", action="store_true", help="refresh again on a window that was already refreshed")
    p.set_defaults(handler=cmd_refresh)


def _champion_config(args: argparse.Namespace, layers, registry) -> tuple[str, Any]:
    """(the champion's version, the effective config: the champion's own < --config < --set < flags)."""
    from ..cli import config_from_args
    from ..config import Layer
    from ..redact import without_redacted

    champion = registry.resolve("champion")
    recorded = without_redacted(registry.bundle(champion).config)
    return champion, config_from_args(args, layers=[Layer(f"{registry.root}@{champion} (the champion's "
                                                          "configuration)", recorded), *layers])


def cmd_refresh(args: argparse.Namespace) -> int:
    from ..aws import AwsSettings, spark_s3_conf
    from ..cli import _check_input, aws_settings, flag_layers
    from ..locks import Lock, LockHeld
    from ..registry.store import Registry
    from ..spark import check_master, get_session, stop_session
    from . import job

    if not args.input:
        raise UserError("refresh needs --input PATH: the new window of logs")
    layers = flag_layers(args)
    registry = Registry.open(args.registry, aws_settings(layers))
    champion, cfg = _champion_config(args, layers, registry)
    job.check_champion(registry.bundle(champion), cfg)
    check_master(cfg.spark.master, f"{cfg.source_of('spark.master')}: spark.master")
    _check_input(cfg)
    with invocation_log(job.refresh_dir(registry) / "logs") as log_path:
        lock = Lock(job.refresh_dir(registry) / "refresh.lock", "refresh", stale_after=cfg.refresh.stale_lock_seconds,
                    what=f"the refresh of registry {registry.root}")
        try:
            lock.acquire()
        except LockHeld as exc:
            log.warning("refresh: skipped, %s", exc)
            print(f"ctr-pipeline: refresh skipped: {exc}")
            return 0
        try:
            if registry.resolve("champion") != champion:   # promoted while we waited for the lock
                champion, cfg = _champion_config(args, layers, registry)
            spark = get_session(cfg.spark, extra_conf=spark_s3_conf(AwsSettings.from_config(cfg)))
            try:
                text = refresh_registry(spark, cfg, registry, champion, args.force, log_path)
            finally:
                stop_session(spark)
        finally:
            lock.release()
    print(f"ctr-pipeline: {text}")
    return 0


def refresh_registry(spark, cfg, registry, champion: str, force: bool, log_path: str) -> str:
    """One refresh of ``registry`` on ``cfg.input.path`` (the caller holds the refresh lock and owns the
    session); returns what to print. A refused window or a failure raises :class:`RunFailed` after
    writing its decision record; the champion stays."""
    from ..progress import watch
    from ..readers.spark import list_input_files
    from . import decide as rules
    from . import job

    files = [{"path": f.display, "bytes": f.size} for f in list_input_files(spark, cfg.input.path)]
    key = rules.window_key((f["path"], f["bytes"]) for f in files)
    before = job.done_before(registry, key)
    if before is not None and not force:
        return (f"window {key} was refreshed already ({before['at']}, {before['decision']['action']}); "
                "nothing to do, --force refreshes again")
    log.info("refresh: window %s (%d file(s)), champion %s@%s", key, len(files), registry.root, champion)
    try:
        with watch(spark, "refresh", cfg.spark.progress_seconds):
            record = job.run(spark, cfg, registry, champion, key, files)
    except InputDataError as exc:
        log.error("refresh: window %s refused: %s", key, exc)
        job.record_refusal(registry, key, files, champion, str(exc))
        raise RunFailed(f"refresh: window {key} refused, champion {champion} kept: {exc} (log: {log_path})") from None
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        from ..failures import failure_reason
        from ..invocation import TRACE

        log.error("refresh: failed: %s", failure_reason(exc))
        logging.getLogger(TRACE).error("refresh: failed\n%s", traceback.format_exc())
        raise RunFailed(f"refresh failed, champion {champion} kept: {failure_reason(exc)} (full trace: {log_path})") \
            from None
    line = rules.summary_line(record)
    log.info("%s", line)
    return (f"{line}\n  decision record: {job.refresh_dir(registry) / 'windows' / (key + '.json')}"
            f"\n  log: {log_path}")
