"""EMR cluster definitions as data: a small YAML schema compiled to the exact ``RunJobFlow`` request.

``load(path)`` reads a definition (see emr_configs/README.md for every key), checks it against our
rules and against botocore's EMR model (:mod:`emr_configs.validate`) and returns a frozen
:class:`ClusterDefinition`; every error names the file, the line and the key. Pure: no AWS call.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ctr_pipeline.config import Layer, load_file_layer
from ctr_pipeline.errors import ConfigError

from .instance_types import INSTANCE_TYPES

HERE = Path(__file__).resolve().parent
BOOTSTRAP_SCRIPT = HERE / "bootstrap.sh"
ENTRY_SCRIPT = HERE.parent / "ctr_pipeline" / "spark_submit.py"
def wheel_name() -> str:
    """The file name pip gives this project's wheel (the installed version: setup.py's in a checkout)."""
    from importlib import metadata

    return f"ctr_pipeline-{metadata.version('ctr-pipeline')}-py3-none-any.whl"

# key -> allowed sub-keys (None: a leaf or a free mapping)
SCHEMA: dict[str, Optional[frozenset]] = {
    "name": None, "release_label": None, "region": None, "log_uri": None, "artifacts_uri": None,
    "data": frozenset({"input_prefixes", "run_prefixes"}),
    "roles": frozenset({"service_role", "instance_profile"}),
    "python": None, "idle_timeout_seconds": None, "subnet_id": None, "key_name": None, "tags": None,
    "applications": None, "instances": frozenset({"groups", "fleets"}),
    "spark": frozenset({"executor_cores", "conf"}),
}
GROUP_KEYS = frozenset({"type", "count", "market", "bid_price"})
FLEET_KEYS = frozenset({"types", "on_demand", "spot", "spot_timeout_minutes"})
DEFAULTS = {"python": "/usr/bin/python3.11", "idle_timeout_seconds": 3600, "applications": ["Spark"],
            "tags": {}, "spark": {"executor_cores": 4, "conf": {}}}


@dataclass(frozen=True)
class Node:
    """One role (master or core): instance groups use ``types[0]`` and ``count``; fleets all of ``types``."""

    types: tuple[str, ...]
    count: int = 1                       # groups: instances; fleets: on-demand + spot capacity
    market: str = "ON_DEMAND"
    bid_price: Optional[str] = None
    on_demand: int = 0
    spot: int = 0
    spot_timeout_minutes: int = 10


@dataclass(frozen=True)
class ClusterDefinition:
    source: str
    name: str
    region: str
    release_label: str
    log_uri: str
    artifacts_uri: str
    input_prefixes: tuple[str, ...]
    run_prefixes: tuple[str, ...]
    service_role: str
    instance_profile: str
    fleets: bool
    master: Node
    core: Node
    python: str = DEFAULTS["python"]
    idle_timeout_seconds: int = 3600
    subnet_id: Optional[str] = None
    key_name: Optional[str] = None
    applications: tuple[str, ...] = ("Spark",)
    tags: Mapping[str, str] = field(default_factory=dict)
    executor_cores: int = 4
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    where: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, key: str) -> str:
        """``FILE line N`` of a dotted key (or the file) for messages."""
        return self.where.get(key, self.source)

    # ------------------------------------------------------------------------------ artifacts
    def artifact(self, name: str) -> str:
        return self.artifacts_uri.rstrip("/") + "/" + name

    @property
    def wheel_uri(self) -> str:
        return self.artifact(f"wheels/{wheel_name()}")

    @property
    def bootstrap_uri(self) -> str:
        return self.artifact("bootstrap.sh")

    @property
    def entry_uri(self) -> str:
        return self.artifact("spark_submit.py")

    # ------------------------------------------------------------------------------ Spark sizing
    def spark_defaults(self) -> dict[str, str]:
        """Executor cores, memory, overhead and count from the smallest core instance type: as many
        executors of ``executor_cores`` per node as its vCPUs allow, sharing its YARN memory."""
        smallest = min(self.core.types, key=lambda t: (INSTANCE_TYPES[t].yarn_mib, INSTANCE_TYPES[t].vcpus))
        kind = INSTANCE_TYPES[smallest]
        per_node = max(1, kind.vcpus // self.executor_cores)
        slot_mib = kind.yarn_mib // per_node
        overhead = max(384, slot_mib // 10)
        nodes = self.core.count if not self.fleets else self.core.on_demand + self.core.spot
        conf = {"spark.executor.cores": str(self.executor_cores), "spark.executor.memory": f"{slot_mib - overhead}m",
                "spark.executor.memoryOverhead": f"{overhead}m", "spark.executor.instances": str(per_node * nodes),
                "spark.dynamicAllocation.enabled": "false",
                "spark.default.parallelism": str(2 * self.executor_cores * per_node * nodes),
                "spark.sql.execution.arrow.pyspark.enabled": "true", "spark.sql.session.timeZone": "UTC"}
        conf.update({str(k): str(v) for k, v in self.spark_conf.items()})
        return conf

    def configurations(self) -> list[dict]:
        return [
            {"Classification": "capacity-scheduler", "Properties": {
                "yarn.scheduler.capacity.resource-calculator":
                    "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"}},
            {"Classification": "spark-defaults", "Properties": self.spark_defaults()},
            {"Classification": "spark-env", "Configurations": [
                {"Classification": "export", "Properties": {"PYSPARK_PYTHON": self.python,
                                                            "PYSPARK_DRIVER_PYTHON": self.python}}]},
        ]

    # ------------------------------------------------------------------------------ the request
    def instances(self) -> dict:
        out: dict[str, Any] = {"KeepJobFlowAliveWhenNoSteps": True, "TerminationProtected": False}
        if self.subnet_id:
            out["Ec2SubnetId" if not self.fleets else "Ec2SubnetIds"] = \
                self.subnet_id if not self.fleets else [self.subnet_id]
        if self.key_name:
            out["Ec2KeyName"] = self.key_name
        if not self.fleets:
            out["InstanceGroups"] = [_group(role, node) for role, node in (("MASTER", self.master),
                                                                           ("CORE", self.core))]
        else:
            out["InstanceFleets"] = [_fleet(role, node) for role, node in (("MASTER", self.master),
                                                                           ("CORE", self.core))]
        return out

    def run_job_flow_request(self, wheel_uri: Optional[str] = None, bootstrap_uri: Optional[str] = None) -> dict:
        """The exact keyword arguments of ``emr.run_job_flow``."""
        wheel_uri, bootstrap_uri = wheel_uri or self.wheel_uri, bootstrap_uri or self.bootstrap_uri
        return {
            "Name": self.name, "ReleaseLabel": self.release_label, "LogUri": self.log_uri,
            "Applications": [{"Name": a} for a in self.applications],
            "Instances": self.instances(), "Configurations": self.configurations(),
            "BootstrapActions": [{"Name": "install ctr-pipeline", "ScriptBootstrapAction": {
                "Path": bootstrap_uri, "Args": [wheel_uri, self.python]}}],
            "ServiceRole": self.service_role, "JobFlowRole": self.instance_profile,
            "VisibleToAllUsers": True,
            "AutoTerminationPolicy": {"IdleTimeout": self.idle_timeout_seconds},
            "Tags": [{"Key": str(k), "Value": str(v)} for k, v in sorted(self.tags.items())],
        }


def _group(role: str, node: Node) -> dict:
    group = {"Name": role.lower(), "InstanceRole": role, "Market": node.market, "InstanceType": node.types[0],
             "InstanceCount": node.count}
    if node.bid_price:
        group["BidPrice"] = node.bid_price
    return group


def _fleet(role: str, node: Node) -> dict:
    fleet: dict[str, Any] = {"Name": role.lower(), "InstanceFleetType": role,
                             "TargetOnDemandCapacity": node.on_demand, "TargetSpotCapacity": node.spot,
                             "InstanceTypeConfigs": [{"InstanceType": t, "WeightedCapacity": 1} for t in node.types]}
    if node.spot:
        fleet["LaunchSpecifications"] = {"SpotSpecification": {
            "TimeoutDurationMinutes": node.spot_timeout_minutes, "TimeoutAction": "SWITCH_TO_ON_DEMAND",
            "AllocationStrategy": "capacity-optimized"}}
    return fleet


# ---------------------------------------------------------------------------------------------- loading

def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def _check_keys(values: Mapping, layer: Layer) -> None:
    def unknown(key: str, known, prefix: str) -> ConfigError:
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
        return ConfigError(f"{layer.source(prefix + key)}: unknown key {prefix + key!r}{hint}")

    for key, body in values.items():
        if key not in SCHEMA:
            raise unknown(str(key), SCHEMA, "")
        sub = SCHEMA[key]
        if sub is not None:
            if not isinstance(body, Mapping):
                raise ConfigError(f"{layer.source(key)}: {key!r} must be a mapping of {', '.join(sorted(sub))}")
            for inner in body:
                if inner not in sub:
                    raise unknown(str(inner), sub, f"{key}.")


def _node(body: Any, key: str, layer: Layer, fleets: bool) -> Node:
    allowed = FLEET_KEYS if fleets else GROUP_KEYS
    if not isinstance(body, Mapping):
        raise ConfigError(f"{layer.source(key)}: {key} must be a mapping of {', '.join(sorted(allowed))}")
    for inner in body:
        if inner not in allowed:
            close = difflib.get_close_matches(str(inner), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            raise ConfigError(f"{layer.source(f'{key}.{inner}')}: unknown key '{key}.{inner}'{hint}")
    try:
        if fleets:
            types = body.get("types")
            if not isinstance(types, list) or not types:
                raise ConfigError(f"{layer.source(key)}: {key}.types must be a non-empty list of instance types")
            return Node(tuple(str(t) for t in types), on_demand=int(body.get("on_demand", 0)),
                        spot=int(body.get("spot", 0)), spot_timeout_minutes=int(body.get("spot_timeout_minutes", 10)))
        if "type" not in body:
            raise ConfigError(f"{layer.source(key)}: {key}.type is missing (e.g. m5.2xlarge)")
        bid = body.get("bid_price")
        return Node((str(body["type"]),), count=int(body.get("count", 1)), market=str(body.get("market", "ON_DEMAND")),
                    bid_price=None if bid is None else str(bid))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{layer.source(key)}: {key}: counts must be whole numbers ({exc})") from None


def load(path: "str | Path", overrides: Optional[Mapping[str, Any]] = None) -> ClusterDefinition:
    """Read, check and validate a definition; ``overrides`` (nested mapping) replace keys of the file."""
    from .validate import check_definition, validate_request

    layer = load_file_layer(path)
    values = _merge(_merge(DEFAULTS, layer.values), overrides or {})
    _check_keys(values, layer)
    for key in ("name", "release_label", "region", "log_uri", "artifacts_uri", "roles", "instances"):
        if values.get(key) in (None, "", {}):
            raise ConfigError(f"{path}: {key} is missing; see emr_configs/README.md")
    inst = values["instances"]
    if len(inst) != 1:
        raise ConfigError(f"{layer.source('instances')}: instances needs exactly one of 'groups' or 'fleets'")
    fleets = "fleets" in inst
    kind = "fleets" if fleets else "groups"
    nodes = inst[kind] if isinstance(inst[kind], Mapping) else {}
    for role in ("master", "core"):
        if role not in nodes:
            raise ConfigError(f"{layer.source('instances.' + kind)}: instances.{kind}.{role} is missing")
    data, roles, spark = values.get("data") or {}, values["roles"], values["spark"]
    defn = ClusterDefinition(
        source=str(path), name=str(values["name"]), region=str(values["region"]),
        release_label=str(values["release_label"]), log_uri=str(values["log_uri"]),
        artifacts_uri=str(values["artifacts_uri"]),
        input_prefixes=tuple(data.get("input_prefixes") or ()), run_prefixes=tuple(data.get("run_prefixes") or ()),
        service_role=str(roles.get("service_role", "")), instance_profile=str(roles.get("instance_profile", "")),
        fleets=fleets, master=_node(nodes["master"], f"instances.{kind}.master", layer, fleets),
        core=_node(nodes["core"], f"instances.{kind}.core", layer, fleets), python=str(values["python"]),
        idle_timeout_seconds=values["idle_timeout_seconds"], subnet_id=values.get("subnet_id"),
        key_name=values.get("key_name"), applications=tuple(values["applications"]),
        tags=dict(values["tags"] or {}), executor_cores=spark.get("executor_cores", 4),
        spark_conf=dict(spark.get("conf") or {}), where=dict(layer.where))
    check_definition(defn)
    validate_request(defn.run_job_flow_request(), defn.source)
    return defn
