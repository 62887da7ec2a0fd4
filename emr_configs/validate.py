"""Offline checks of a cluster definition: our rules, then botocore's EMR model of the request.

:func:`check_definition` applies our rules (EMR 7.x with python3.11, Spark present, S3 locations,
known instance types, fleet and spot settings, executors that fit each core instance type);
:func:`validate_request` checks a request against botocore's EMR service model (unknown keys, wrong
types, missing keys, lengths and ranges). Every error is a :class:`~ctr_pipeline.errors.ConfigError`
``FILE line N: key: what is wrong; what to do``.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping, Optional

from ctr_pipeline.errors import ConfigError

from .instance_types import INSTANCE_TYPES

if TYPE_CHECKING:
    from .definition import ClusterDefinition

RELEASE = re.compile(r"^emr-7\.(\d+)\.\d+$")
# JVM size suffixes Spark accepts (a bare number is MiB for executor memory and overhead)
UNITS_MIB = {"k": 1 / 1024, "kb": 1 / 1024, "m": 1, "mb": 1, "g": 1024, "gb": 1024, "t": 1024 ** 2, "tb": 1024 ** 2}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
# request parameter (prefix) -> the definition key that produces it, for botocore's messages
REQUEST_KEYS = (
    ("Name", "name"), ("ReleaseLabel", "release_label"), ("LogUri", "log_uri"), ("Applications", "applications"),
    ("Instances.Ec2KeyName", "key_name"), ("Instances.Ec2SubnetId", "subnet_id"),
    ("Instances.Ec2SubnetIds", "subnet_id"),
    ("Instances.InstanceGroups[0]", "instances.groups.master"),
    ("Instances.InstanceGroups[1]", "instances.groups.core"),
    ("Instances.InstanceFleets[0]", "instances.fleets.master"),
    ("Instances.InstanceFleets[1]", "instances.fleets.core"),
    ("Configurations", "spark.conf"),
    ("BootstrapActions", "artifacts_uri"), ("ServiceRole", "roles.service_role"),
    ("JobFlowRole", "roles.instance_profile"), ("AutoTerminationPolicy", "idle_timeout_seconds"), ("Tags", "tags"),
)


def _need(ok: bool, defn: "ClusterDefinition", key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{defn.source_of(key)}: {key}: {message}")


def check_definition(defn: "ClusterDefinition") -> None:
    """Raise :class:`ConfigError` at the first of our rules that ``defn`` breaks; return None if none."""
    _check_release(defn)
    _check_locations(defn)
    _check_nodes(defn)
    _check_executors(defn)


def _check_release(defn: "ClusterDefinition") -> None:
    match = RELEASE.match(defn.release_label)
    _need(bool(match), defn, "release_label",
          f"{defn.release_label!r} is not an EMR 7.x release (Spark 3.5, Python 3.11); use e.g. emr-7.5.0")
    _need(not (match and match.group(1) == "0" and defn.python.endswith("python3.11")), defn, "release_label",
          f"{defn.release_label} ships Python 3.9 only, and python is {defn.python}; use emr-7.1.0 or later")
    _need("Spark" in defn.applications, defn, "applications",
          f"{list(defn.applications)} lacks Spark, which every stage runs on; add Spark")
    _need(isinstance(defn.idle_timeout_seconds, int) and not isinstance(defn.idle_timeout_seconds, bool)
          and 60 <= defn.idle_timeout_seconds <= 604800, defn, "idle_timeout_seconds",
          f"{defn.idle_timeout_seconds!r}: EMR accepts 60 to 604800 seconds")


def _check_locations(defn: "ClusterDefinition") -> None:
    for key, uri in (("log_uri", defn.log_uri), ("artifacts_uri", defn.artifacts_uri)):
        _need(uri.startswith("s3://") and len(uri) > 5, defn, key,
              f"{uri!r} must be an s3:// location (a cluster's disks go away when it terminates)")
    for key, prefixes in (("data.input_prefixes", defn.input_prefixes), ("data.run_prefixes", defn.run_prefixes)):
        _need(bool(prefixes), defn, key, "list at least one s3:// prefix (the instance role may touch nothing else)")
        for p in prefixes:
            _need(p.startswith("s3://") and len(p) > 5, defn, key, f"{p!r} is not an s3:// prefix")


def _check_nodes(defn: "ClusterDefinition") -> None:
    kind = "fleets" if defn.fleets else "groups"
    for role, node in (("master", defn.master), ("core", defn.core)):
        key = f"instances.{kind}.{role}"
        for t in node.types:
            _need(t in INSTANCE_TYPES, defn, key,
                  f"unknown instance type {t!r}; known (emr_configs/instance_types.py): {', '.join(INSTANCE_TYPES)}")
        if defn.fleets:
            _need(len(set(node.types)) == len(node.types), defn, key + ".types", "lists an instance type twice")
            _need(node.on_demand >= 0 and node.spot >= 0 and node.on_demand + node.spot >= 1, defn, key,
                  "on_demand + spot capacity must be at least 1")
            _need(not node.spot or 5 <= node.spot_timeout_minutes <= 1440, defn, key + ".spot_timeout_minutes",
                  f"{node.spot_timeout_minutes}: EMR accepts 5 to 1440 minutes")
        else:
            _need(node.count >= 1, defn, key + ".count", "at least one instance")
            _need(node.market in ("ON_DEMAND", "SPOT"), defn, key + ".market",
                  f"{node.market!r}: ON_DEMAND or SPOT")
    if defn.fleets:
        _need(defn.master.on_demand + defn.master.spot == 1, defn, "instances.fleets.master",
              "the master fleet has exactly one node: on_demand: 1 (or spot: 1)")
    else:
        _need(defn.master.count == 1, defn, "instances.groups.master.count", "the master group has one node")


def _check_executors(defn: "ClusterDefinition") -> None:
    cores = defn.executor_cores
    _need(cores >= 1, defn, "spark.executor_cores", f"{cores!r}: a whole number >= 1")
    _need("spark.executor.cores" not in defn.spark_conf, defn, "spark.conf",
          "set executor cores with spark.executor_cores (the sizing uses it), not spark.executor.cores")
    conf = defn.spark_defaults()
    memory = _mib(conf["spark.executor.memory"], defn, "spark.executor.memory") + \
        _mib(conf["spark.executor.memoryOverhead"], defn, "spark.executor.memoryOverhead")
    for t in defn.core.types:
        kind = INSTANCE_TYPES[t]
        _need(cores <= kind.vcpus, defn, "spark.executor_cores",
              f"{cores} cores per executor do not fit {t} ({kind.vcpus} vCPUs); use at most {kind.vcpus}")
        _need(memory <= kind.yarn_mib, defn, "spark.conf",
              f"executor memory + overhead {memory} MiB does not fit {t} (YARN offers about {kind.yarn_mib} "
              "MiB); lower spark.executor.memory or leave it to the sizing")


def _mib(text: str, defn: "ClusterDefinition", prop: str) -> int:
    """A Spark memory size (``4g``, ``512m``, ``4096`` = MiB) in MiB, or a ConfigError naming spark.conf."""
    match = SIZE.match(str(text).lower())
    if not match or match.group(2) not in ("", *UNITS_MIB):
        raise ConfigError(f"{defn.source_of('spark.conf.' + prop)}: spark.conf.{prop}: {text!r} is not a size; "
                          "write e.g. 4g or 4096m")
    return int(float(match.group(1)) * UNITS_MIB.get(match.group(2), 1))


def _definition_key(param: str) -> Optional[str]:
    best = [key for prefix, key in REQUEST_KEYS if param == prefix or param.startswith((prefix + ".", prefix + "["))]
    return best[-1] if best else None


def validate_request(request: dict, source: str, operation: str = "RunJobFlow",
                     where: Optional[Mapping[str, str]] = None) -> None:
    """Check ``request`` (the keyword arguments of the EMR ``operation``) against botocore's EMR service
    model; return None if it is valid. Otherwise raise one :class:`ConfigError` listing each problem;
    with ``where`` (a definition's key -> ``FILE line N``), a RunJobFlow problem names the key of the
    definition that produced the parameter."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("emr").operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    if not report.has_errors():
        return
    named = []
    for problem in (line.strip() for line in report.generate_report().splitlines() if line.strip()):
        param = re.search(r"parameter(?: in)? ([\w.\[\]]+)", problem)
        key = _definition_key(param.group(1)) if param and where is not None and operation == "RunJobFlow" else None
        named.append(f"{where.get(key, source)}: {key}: {problem}; fix {key}" if key and where is not None
                     else f"{source}: {problem}")
    raise ConfigError("; ".join(named) + f" (botocore's EMR model of the {operation} request)")
