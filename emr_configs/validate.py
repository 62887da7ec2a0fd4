"""Offline checks of a cluster definition: our rules, then botocore's EMR ``RunJobFlow`` input shape.

Every error is a :class:`~ctr_pipeline.errors.ConfigError` naming the file, the line and the key.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ctr_pipeline.errors import ConfigError

from .instance_types import INSTANCE_TYPES

if TYPE_CHECKING:
    from .definition import ClusterDefinition

RELEASE = re.compile(r"^emr-7\.\d+\.\d+$")


def _need(ok: bool, defn: "ClusterDefinition", key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{defn.source_of(key)}: {key}: {message}")


def check_definition(defn: "ClusterDefinition") -> None:
    """Our rules: EMR 7.x, Spark present, S3 locations, known instance types, executors that fit."""
    _need(bool(RELEASE.match(defn.release_label)), defn, "release_label",
          f"{defn.release_label!r} is not an EMR 7.x release (Spark 3.5, Python 3.11); use e.g. emr-7.5.0")
    _need("Spark" in defn.applications, defn, "applications",
          f"{list(defn.applications)} lacks Spark, which every stage runs on; add Spark")
    for key, uri in (("log_uri", defn.log_uri), ("artifacts_uri", defn.artifacts_uri)):
        _need(uri.startswith("s3://"), defn, key, f"{uri!r} must be an s3:// location (a cluster's disks go "
                                                  "away when it terminates)")
    for key, prefixes in (("data.input_prefixes", defn.input_prefixes), ("data.run_prefixes", defn.run_prefixes)):
        _need(bool(prefixes), defn, key, "list at least one s3:// prefix (the instance role may touch nothing else)")
        for p in prefixes:
            _need(str(p).startswith("s3://") and len(str(p)) > 5, defn, key, f"{p!r} is not an s3:// prefix")
    _need(bool(defn.service_role) and bool(defn.instance_profile), defn, "roles",
          "both service_role and instance_profile are needed (see emr_configs/iam.py for their policies)")
    _need(isinstance(defn.idle_timeout_seconds, int) and 60 <= defn.idle_timeout_seconds <= 604800, defn,
          "idle_timeout_seconds", f"{defn.idle_timeout_seconds!r}: EMR accepts 60 to 604800 seconds")
    kind = "fleets" if defn.fleets else "groups"
    for role, node in (("master", defn.master), ("core", defn.core)):
        key = f"instances.{kind}.{role}"
        for t in node.types:
            _need(t in INSTANCE_TYPES, defn, key, f"unknown instance type {t!r}; known: {', '.join(INSTANCE_TYPES)}")
        if defn.fleets:
            _need(node.on_demand >= 0 and node.spot >= 0 and node.on_demand + node.spot >= 1, defn, key,
                  "on_demand + spot capacity must be at least 1")
            _need(5 <= node.spot_timeout_minutes <= 1440, defn, key + ".spot_timeout_minutes",
                  "EMR accepts 5 to 1440 minutes")
        else:
            _need(node.count >= 1, defn, key + ".count", "at least one instance")
            _need(node.market in ("ON_DEMAND", "SPOT"), defn, key + ".market", "ON_DEMAND or SPOT")
    if defn.fleets:
        _need(defn.master.on_demand + defn.master.spot == 1, defn, "instances.fleets.master",
              "the master fleet has exactly one node: on_demand: 1 (or spot: 1)")
    else:
        _need(defn.master.count == 1, defn, "instances.groups.master.count", "the master group has one node")
    cores = defn.executor_cores
    _need(isinstance(cores, int) and cores >= 1, defn, "spark.executor_cores", f"{cores!r}: a whole number >= 1")
    conf = defn.spark_defaults()
    memory = _mib(conf["spark.executor.memory"]) + _mib(conf["spark.executor.memoryOverhead"])
    for t in defn.core.types:
        kind_t = INSTANCE_TYPES[t]
        _need(cores <= kind_t.vcpus, defn, "spark.executor_cores",
              f"{cores} cores per executor do not fit {t} ({kind_t.vcpus} vCPUs)")
        _need(memory <= kind_t.yarn_mib, defn, "spark.conf",
              f"executor memory + overhead {memory} MiB does not fit {t} (YARN offers about {kind_t.yarn_mib} MiB)")


def _mib(text: str) -> int:
    units = {"m": 1, "g": 1024, "k": 1 / 1024}
    text = str(text).strip().lower()
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(int(text) / (1024 * 1024))  # plain bytes


def validate_request(request: dict, source: str, operation: str = "RunJobFlow") -> None:
    """Check a request against botocore's EMR service model (unknown keys, wrong types, missing keys)."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("emr").operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        problems = "; ".join(line.strip() for line in report.generate_report().splitlines() if line.strip())
        raise ConfigError(f"{source}: the {operation} request it makes is not valid for EMR: {problems}")
