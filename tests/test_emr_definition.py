"""Cluster definitions: every shipped file against botocore's EMR model, one bad definition per rule,
Spark sizing, least-privilege IAM documents and the generated mrjob.conf."""
import json
from pathlib import Path

import pytest
import yaml

from ctr_pipeline.errors import ConfigError
from emr_configs.definition import load
from emr_configs.iam import instance_role_policy, service_role_policies
from emr_configs.instance_types import INSTANCE_TYPES
from emr_configs.mrjob_conf import mrjob_conf
from emr_configs.validate import validate_request

from .conftest import REPO

DEFINITIONS = sorted((REPO / "emr_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_shipped_definitions_are_valid(path):
    defn = load(path)
    req = defn.run_job_flow_request()
    validate_request(req, str(path))                       # raises on any botocore model violation
    assert req["ReleaseLabel"].startswith("emr-7.") and {"Name": "Spark"} in req["Applications"]
    classes = {c["Classification"]: c for c in req["Configurations"]}
    assert classes["capacity-scheduler"]["Properties"]["yarn.scheduler.capacity.resource-calculator"].endswith(
        "DominantResourceCalculator")
    assert classes["spark-env"]["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == "/usr/bin/python3.11"
    boot = req["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert boot["Path"] == defn.bootstrap_uri and boot["Args"][0] == defn.wheel_uri
    assert req["AutoTerminationPolicy"]["IdleTimeout"] == defn.idle_timeout_seconds and req["Tags"]


def test_spot_fleet_falls_back_to_on_demand():
    req = load(REPO / "emr_configs" / "spot-fleet.yaml").run_job_flow_request()
    core = next(f for f in req["Instances"]["InstanceFleets"] if f["InstanceFleetType"] == "CORE")
    assert core["TargetSpotCapacity"] == 4 and len(core["InstanceTypeConfigs"]) == 3
    assert core["LaunchSpecifications"]["SpotSpecification"]["TimeoutAction"] == "SWITCH_TO_ON_DEMAND"


def test_executors_are_sized_to_fit_the_core_type():
    defn = load(REPO / "emr_configs" / "default.yaml")
    conf = defn.spark_defaults()
    kind = INSTANCE_TYPES["m5.2xlarge"]
    per_node = kind.vcpus // int(conf["spark.executor.cores"])
    mib = int(conf["spark.executor.memory"][:-1]) + int(conf["spark.executor.memoryOverhead"][:-1])
    assert per_node * mib <= kind.yarn_mib and mib > 0.9 * kind.yarn_mib / per_node
    assert int(conf["spark.executor.instances"]) == per_node * 2


def write(tmp_path, edit) -> Path:
    values = yaml.safe_load((REPO / "emr_configs" / "default.yaml").read_text())
    edit(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _set(path: str, value):
    def edit(values):
        *parents, last = path.split(".")
        node = values
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("release_label", "emr-6.15.0"), r"line \d+: release_label: 'emr-6.15.0' is not an EMR 7.x release"),
    (_set("applications", ["Hadoop"]), r"applications: \['Hadoop'\] lacks Spark"),
    (_set("spark.executor_cores", 16), r"line \d+: spark.executor_cores: 16 cores per executor do not fit m5.2xlarge"),
    (_set("spark.conf", {"spark.executor.memory": "40g"}), r"spark.conf: executor memory \+ overhead .* does not fit"),
    (_set("log_uri", "/var/log/emr"), r"line \d+: log_uri: '/var/log/emr' must be an s3:// location"),
    (_set("data.run_prefixes", []), r"data.run_prefixes: list at least one s3:// prefix"),
    (_set("instances.groups.core.type", "m5.huge"), r"unknown instance type 'm5.huge'"),
    (_set("instances.groups.master.count", 3), r"the master group has one node"),
    (_set("idle_timeout_seconds", 5), r"idle_timeout_seconds: 5: EMR accepts 60 to 604800"),
    (_set("relase_label", "emr-7.5.0"), r"unknown key 'relase_label'; did you mean 'release_label'\?"),
    (_set("instances.groups.core.cout", 2), r"unknown key 'instances.groups.core.cout'; did you mean 'count'\?"),
    (_set("instances.fleets", {"master": {"types": ["m5.xlarge"], "on_demand": 1}}),
     r"instances needs exactly one of 'groups' or 'fleets'"),
    (_set("key_name", 12345), r"RunJobFlow request it makes is not valid for EMR: Invalid type for "
                              r"parameter Instances.Ec2KeyName"),
])
def test_each_rule_names_file_line_and_key(tmp_path, edit, message):
    path = write(tmp_path, edit)
    with pytest.raises(ConfigError, match=message) as err:
        load(path)
    assert str(path) in str(err.value)


def test_spot_timeout_rule(tmp_path):
    values = yaml.safe_load((REPO / "emr_configs" / "spot-fleet.yaml").read_text())
    values["instances"]["fleets"]["core"]["spot_timeout_minutes"] = 2
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"instances.fleets.core.spot_timeout_minutes: EMR accepts 5 to 1440"):
        load(path)


def test_iam_grants_exactly_the_prefixes():
    defn = load(REPO / "emr_configs" / "default.yaml")
    doc = instance_role_policy(defn)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    assert by_sid["ReadInputAndArtifacts"]["Resource"] == [
        "arn:aws:s3:::my-ctr-bucket/ctr-pipeline/artifacts/*", "arn:aws:s3:::my-ctr-bucket/logs/*"]
    assert by_sid["ReadWriteRuns"]["Resource"] == [
        "arn:aws:s3:::my-ctr-bucket/ctr-pipeline/artifacts/mrjob-tmp/*", "arn:aws:s3:::my-ctr-bucket/runs/*"]
    assert by_sid["WriteLogs"]["Resource"] == ["arn:aws:s3:::my-ctr-bucket/emr-logs/*"]
    assert all("*" not in s["Resource"] for s in doc["Statement"] if isinstance(s["Resource"], str))
    service = service_role_policies(defn, "123456789012")
    (passrole,) = service["inline_policy"]["Statement"]
    assert passrole["Action"] == "iam:PassRole" and \
        passrole["Resource"] == "arn:aws:iam::123456789012:role/ctr-pipeline-emr-instance"
    json.dumps(service)


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_mrjob_conf_uses_real_mrjob_options(path):
    from mrjob.emr import EMRJobRunner

    defn = load(path)
    opts = mrjob_conf(defn, "http://127.0.0.1:1")["runners"]["emr"]
    assert set(opts) <= set(EMRJobRunner.OPT_NAMES), set(opts) - set(EMRJobRunner.OPT_NAMES)
    assert opts["region"] == defn.region and opts["release_label"] == defn.release_label
    assert opts["iam_instance_profile"] == defn.instance_profile and opts["bootstrap"][0].startswith(
        f"bash {defn.bootstrap_uri}# {defn.wheel_uri}")
    assert ("instance_fleets" in opts) == defn.fleets
