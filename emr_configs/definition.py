"""EMR cluster definitions as data: a small YAML schema compiled to the exact ``RunJobFlow`` request.

``load(path)`` reads a definition (see emr_configs/README.md for every key), checks it against our
rules and against botocore's EMR model (:mod:`emr_configs.validate`) and returns a frozen
:class:`ClusterDefinition`; every error names the file, the line and the key. Pure: no AWS call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .instance_types import INSTANCE_TYPES

HERE = Path(__file__).resolve().parent
BOOTSTRAP_SCRIPT = HERE / "bootstrap.sh"
ENTRY_SCRIPT = HERE.parent / "ctr_pipeline" / "spark_submit.py"


def wheel_name() -> str:
    """The file name pip gives this project's wheel (the installed version: setup.py's in a checkout)."""
    from importlib import metadata

    return f"ctr_pipeline-{metadata.version('ctr-pipeline')}-py3-none-any.whl"


DEFAULT_PYTHON = "/usr/bin/python3.11"  # EMR 7.1+ ships python3.11 beside the system python3.9
AM_RESERVE_MIB = 1024  # per core node: room for the YARN application master of a client-mode Spark job
YARN_STEP_MIB = 32     # EMR's yarn.scheduler.minimum-allocation-mb: containers are multiples of it


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
    """A checked cluster definition (build it with :func:`load`). ``source`` is the YAML path and
    ``where`` maps each dotted key to ``FILE line N``, for messages. Sizes: ``idle_timeout_seconds`` in
    seconds; instance counts in instances (fleets: capacity units, one per instance)."""

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
    python: str = DEFAULT_PYTHON
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
        """The S3 URI of ``name`` under ``artifacts_uri``."""
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
        """``spark-defaults`` properties (strings, memory in MiB) sized from the smallest core instance
        type: as many executors of ``executor_cores`` per node as its vCPUs allow, sharing its YARN
        memory less :data:`AM_RESERVE_MIB` (so the application master fits beside them), 10% of each
        executor's container as overhead (at least 384 MiB). ``spark.conf`` entries win."""
        smallest = min(self.core.types, key=lambda t: (INSTANCE_TYPES[t].yarn_mib, INSTANCE_TYPES[t].vcpus))
        kind = INSTANCE_TYPES[smallest]
        per_node = max(1, kind.vcpus // self.executor_cores)
        slot_mib = (kind.yarn_mib - AM_RESERVE_MIB) // per_node // YARN_STEP_MIB * YARN_STEP_MIB
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
        """EMR configurations: YARN's DominantResourceCalculator (so vCPUs count, not only memory),
        the sized ``spark-defaults``, and ``spark-env`` pinning PYSPARK_PYTHON to ``python``."""
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
        """The request's ``Instances``: groups or fleets, subnet, key pair; the cluster waits for steps."""
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
        """The exact keyword arguments of ``emr.run_job_flow``; the bootstrap action runs
        ``bootstrap_uri`` with ``wheel_uri`` and ``python`` (defaults: this definition's artifacts)."""
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
    specs: dict[str, Any] = {}
    if node.spot:  # spot first; on-demand when spot capacity is not found in time
        specs["SpotSpecification"] = {"TimeoutDurationMinutes": node.spot_timeout_minutes,
                                      "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                                      "AllocationStrategy": "capacity-optimized"}
    if node.spot or len(node.types) > 1:  # on-demand (or the fallback) takes the cheapest listed type
        specs["OnDemandSpecification"] = {"AllocationStrategy": "lowest-price"}
    if specs:
        fleet["LaunchSpecifications"] = specs
    return fleet


# ---------------------------------------------------------------------------------------------- loading

def load(path: "str | Path", overrides: Optional[Mapping[str, Any]] = None) -> ClusterDefinition:
    """Read, check and validate the definition at ``path``; ``overrides`` (a nested mapping, e.g.
    ``{"data": {"run_prefixes": ["s3://b/runs/"]}}``) replace keys of the file.

    Returns a frozen :class:`ClusterDefinition`. Raises :class:`ConfigError` naming the file, the line
    and the key (see emr_configs/README.md for every key).
    """
    from .parse import read
    from .validate import check_definition, validate_request

    fields = read(path, overrides)
    defn = ClusterDefinition(**{**fields, "master": Node(**fields["master"]), "core": Node(**fields["core"])})
    check_definition(defn)
    validate_request(defn.run_job_flow_request(), defn.source, where=defn.where)
    return defn
