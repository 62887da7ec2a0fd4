"""Cluster definitions: every shipped file against botocore's EMR model, one bad definition per rule
(each message names the file, the line and the key), Spark sizing, least-privilege IAM documents, the
generated mrjob.conf and the bootstrap script."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ctr_pipeline.errors import ConfigError
from emr_configs.definition import AM_RESERVE_MIB, BOOTSTRAP_SCRIPT, load
from emr_configs.iam import EMR_SERVICE_POLICY_ARN, instance_role_policy, service_role_policies, trust_policy
from emr_configs.instance_types import INSTANCE_TYPES
from emr_configs.mrjob_conf import mrjob_conf
from emr_configs.validate import validate_request

from .conftest import REPO

DEFINITIONS = sorted((REPO / "emr_configs").glob("*.yaml"))
DEFAULT = REPO / "emr_configs" / "default.yaml"
FLEET = REPO / "emr_configs" / "spot-fleet.yaml"


def test_there_are_groups_and_fleets_definitions():
    assert {p.name for p in DEFINITIONS} >= {"default.yaml", "spot-fleet.yaml"}


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_shipped_definitions_are_valid(path):
    defn = load(path)
    req = defn.run_job_flow_request("s3://b/w.whl", "s3://b/boot.sh")
    validate_request(req, str(path))                       # raises on any botocore model violation
    assert req["ReleaseLabel"].startswith("emr-7.") and {"Name": "Spark"} in req["Applications"]
    classes = {c["Classification"]: c for c in req["Configurations"]}
    assert classes["capacity-scheduler"]["Properties"]["yarn.scheduler.capacity.resource-calculator"] == \
        "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"
    assert classes["spark-env"]["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == "/usr/bin/python3.11"
    assert classes["spark-defaults"]["Properties"] == defn.spark_defaults()
    boot = req["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert boot == {"Path": "s3://b/boot.sh", "Args": ["s3://b/w.whl", "/usr/bin/python3.11"]}
    assert req["AutoTerminationPolicy"]["IdleTimeout"] == defn.idle_timeout_seconds
    assert {"Key": "project", "Value": "ctr-pipeline"} in req["Tags"]
    assert req["LogUri"].startswith("s3://") and req["JobFlowRole"] == defn.instance_profile


def test_default_is_on_demand_instance_groups():
    groups = load(DEFAULT).run_job_flow_request()["Instances"]["InstanceGroups"]
    assert [(g["InstanceRole"], g["InstanceType"], g["InstanceCount"], g["Market"]) for g in groups] == [
        ("MASTER", "m5.xlarge", 1, "ON_DEMAND"), ("CORE", "m5.2xlarge", 2, "ON_DEMAND")]


def test_spot_fleet_falls_back_to_on_demand():
    fleets = {f["InstanceFleetType"]: f for f in load(FLEET).run_job_flow_request()["Instances"]["InstanceFleets"]}
    master, core = fleets["MASTER"], fleets["CORE"]
    assert master["TargetOnDemandCapacity"] == 1 and master["TargetSpotCapacity"] == 0
    assert "SpotSpecification" not in master["LaunchSpecifications"]
    assert core["TargetSpotCapacity"] == 4 and core["TargetOnDemandCapacity"] == 0
    assert [c["InstanceType"] for c in core["InstanceTypeConfigs"]] == ["m5.2xlarge", "m6i.2xlarge", "r5.2xlarge"]
    spot = core["LaunchSpecifications"]["SpotSpecification"]
    assert spot["TimeoutAction"] == "SWITCH_TO_ON_DEMAND" and spot["TimeoutDurationMinutes"] == 10
    assert core["LaunchSpecifications"]["OnDemandSpecification"] == {"AllocationStrategy": "lowest-price"}


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_executors_fit_every_core_type_with_room_for_the_application_master(path):
    defn = load(path)
    conf = defn.spark_defaults()
    cores = int(conf["spark.executor.cores"])
    container = int(conf["spark.executor.memory"][:-1]) + int(conf["spark.executor.memoryOverhead"][:-1])
    nodes = defn.core.count if not defn.fleets else defn.core.on_demand + defn.core.spot
    smallest = min(INSTANCE_TYPES[t].yarn_mib for t in defn.core.types)
    for t in defn.core.types:
        kind = INSTANCE_TYPES[t]
        per_node = kind.vcpus // cores
        assert per_node * container + AM_RESERVE_MIB <= kind.yarn_mib, t
    per_node = INSTANCE_TYPES[min(defn.core.types, key=lambda t: INSTANCE_TYPES[t].yarn_mib)].vcpus // cores
    assert container > 0.9 * (smallest - AM_RESERVE_MIB) / per_node       # little YARN memory left unused
    assert int(conf["spark.executor.instances"]) == per_node * nodes
    assert int(conf["spark.executor.memoryOverhead"][:-1]) >= 384


def test_spark_conf_wins_and_sizes_in_any_unit(tmp_path):
    for value in ("8g", "8192", "8192m", "8192MB"):
        defn = load(write(tmp_path, _set("spark.conf", {"spark.executor.memory": value, "spark.speculation": True})))
        assert defn.spark_defaults()["spark.executor.memory"] == value
        assert defn.spark_defaults()["spark.speculation"] == "True"


def test_instance_types_table_is_consistent():
    for name, kind in INSTANCE_TYPES.items():
        assert kind.vcpus >= 4 and 0 < kind.yarn_mib < kind.memory_gib * 1024, name
    assert {n.split(".")[0] for n in INSTANCE_TYPES} == {"m5", "m6i", "r5", "c5", "g5"}
    assert all(k.gpus == 1 for n, k in INSTANCE_TYPES.items() if n.startswith("g5."))


# ---------------------------------------------------------------------------------------------- bad definitions

def write(tmp_path, edit, source: Path = DEFAULT) -> Path:
    values = yaml.safe_load(source.read_text())
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


RULES = [
    ("release_label", "emr-6.15.0", r"release_label: 'emr-6.15.0' is not an EMR 7.x release.*use e.g. emr-7.5.0"),
    ("release_label", "emr-7.0.0", r"release_label: emr-7.0.0 ships Python 3.9 only.*use emr-7.1.0 or later"),
    ("applications", ["Hadoop"], r"applications: \['Hadoop'\] lacks Spark.*add Spark"),
    ("applications", "Spark", r"applications: must be a list of strings, e.g. \[Spark\]"),
    ("spark.executor_cores", 16, r"spark.executor_cores: 16 cores per executor do not fit m5.2xlarge \(8 vCPUs\)"),
    ("spark.executor_cores", "four", r"spark.executor_cores: must be a whole number, got 'four'"),
    ("spark.executor_cores", 0, r"spark.executor_cores: 0: a whole number >= 1"),
    ("spark.conf", {"spark.executor.memory": "40g"},
     r"spark.conf: executor memory \+ overhead \d+ MiB does not fit m5.2xlarge .*lower spark.executor.memory"),
    ("spark.conf", {"spark.executor.memory": "lots"}, r"spark.conf.spark.executor.memory: 'lots' is not a size"),
    ("spark.conf", {"spark.executor.cores": 2}, r"spark.conf: set executor cores with spark.executor_cores"),
    ("log_uri", "/var/log/emr", r"log_uri: '/var/log/emr' must be an s3:// location"),
    ("artifacts_uri", "hdfs:///artifacts", r"artifacts_uri: 'hdfs:///artifacts' must be an s3:// location"),
    ("data.run_prefixes", [], r"data.run_prefixes: list at least one s3:// prefix"),
    ("data.input_prefixes", "s3://b/logs/", r"data.input_prefixes: must be a list of strings"),
    ("data.input_prefixes", ["/data/logs"], r"data.input_prefixes: '/data/logs' is not an s3:// prefix"),
    ("roles.service_role", "", r"roles.service_role: is missing: name the IAM role"),
    ("instances.groups.core.type", "m5.huge", r"instances.groups.core: unknown instance type 'm5.huge'"),
    ("instances.groups.master.count", 3, r"instances.groups.master.count: the master group has one node"),
    ("instances.groups.core.market", "spot", r"instances.groups.core.market: 'spot': ON_DEMAND or SPOT"),
    ("instances.groups.core.bid_price", "0.2", r"instances.groups.core.bid_price: only applies to market: SPOT"),
    ("idle_timeout_seconds", 5, r"idle_timeout_seconds: 5: EMR accepts 60 to 604800 seconds"),
    ("relase_label", "emr-7.5.0", r"relase_label: unknown key 'relase_label'; did you mean 'release_label'\?"),
    ("instances.groups.core.cout", 2, r"unknown key 'instances.groups.core.cout'; did you mean 'count'\?"),
    ("spark.executor_memory", "4g", r"unknown key 'spark.executor_memory'; did you mean 'executor_cores'\?"),
    ("instances.fleets", {"master": {"types": ["m5.xlarge"], "on_demand": 1}},
     r"instances: needs exactly one of 'groups' or 'fleets'"),
    ("key_name", 12345, r"key_name: Invalid type for parameter Instances.Ec2KeyName, value: 12345.*; fix key_name "
                        r"\(botocore's EMR model of the RunJobFlow request\)"),
    ("name", 123, r"name: Invalid type for parameter Name, value: 123.*fix name"),
]


@pytest.mark.parametrize("key, value, message", RULES, ids=[f"{k}={str(v)[:20]}" for k, v, _ in RULES])
def test_each_rule_names_file_line_and_key(tmp_path, key, value, message):
    path = write(tmp_path, _set(key, value))
    with pytest.raises(ConfigError, match=message) as err:
        load(path)
    assert str(err.value).startswith(f"{path} line "), str(err.value)   # the file and the key's line


FLEET_RULES = [
    ("instances.fleets.core.spot_timeout_minutes", 2,
     r"instances.fleets.core.spot_timeout_minutes: 2: EMR accepts 5 to 1440 minutes"),
    ("instances.fleets.master.spot_timeout_minutes", 10,
     r"instances.fleets.master.spot_timeout_minutes: is set but the fleet asks for no spot capacity"),
    ("instances.fleets.master.on_demand", 2, r"instances.fleets.master: the master fleet has exactly one node"),
    ("instances.fleets.core.types", ["m5.2xlarge", "m5.2xlarge"], r"instances.fleets.core.types: lists an instance "
                                                                  r"type twice"),
    ("instances.fleets.core.types", "m5.2xlarge", r"instances.fleets.core.types: must be a list of strings"),
    ("instances.fleets.core.spot", 0, r"instances.fleets.core.spot_timeout_minutes: is set but the fleet asks for "
                                      r"no spot capacity"),
]


@pytest.mark.parametrize("key, value, message", FLEET_RULES, ids=[k for k, _, _ in FLEET_RULES])
def test_each_fleet_rule_names_file_line_and_key(tmp_path, key, value, message):
    path = write(tmp_path, _set(key, value), FLEET)
    with pytest.raises(ConfigError, match=message) as err:
        load(path)
    assert str(err.value).startswith(f"{path} line "), str(err.value)


def test_a_fleet_is_sized_for_its_smallest_type_and_every_type_must_fit(tmp_path):
    defn = load(write(tmp_path, _set("instances.fleets.core.types", ["m5.4xlarge", "m5.2xlarge"]), FLEET))
    assert int(defn.spark_defaults()["spark.executor.memory"][:-1]) < INSTANCE_TYPES["m5.2xlarge"].yarn_mib // 2

    def edit(values):
        values["instances"]["fleets"]["core"]["types"] = ["m5.2xlarge", "c5.xlarge"]
        values["spark"]["executor_cores"] = 8
    with pytest.raises(ConfigError, match=r"line \d+: spark.executor_cores: 8 cores per executor do not fit "
                                          r"c5.xlarge \(4 vCPUs\); use at most 4"):
        load(write(tmp_path, edit, FLEET))


def test_overrides_replace_keys_and_are_named_in_messages():
    defn = load(DEFAULT, {"data": {"run_prefixes": ["s3://other/runs/"]}, "tags": {"owner": "me"}})
    assert defn.run_prefixes == ("s3://other/runs/",) and defn.input_prefixes == ("s3://my-ctr-bucket/logs/",)
    assert defn.tags == {"project": "ctr-pipeline", "owner": "me"}
    with pytest.raises(ConfigError, match=r"default.yaml \(override of release_label\): release_label: 'emr-6.1.0'"):
        load(DEFAULT, {"release_label": "emr-6.1.0"})


def test_missing_file_and_missing_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load(tmp_path / "nope.yaml")
    path = tmp_path / "empty.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: release_label: is missing; see emr_configs/README.md"):
        load(path)


def test_botocore_problems_without_a_definition_name_the_source():
    with pytest.raises(ConfigError, match=r"^here.yaml: Missing required parameter in input: \"Name\""):
        validate_request({"Instances": {}}, "here.yaml")


# ---------------------------------------------------------------------------------------------- IAM

def _actions(statement) -> set:
    return {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])


def test_instance_role_grants_exactly_the_prefixes():
    defn = load(DEFAULT)
    doc = instance_role_policy(defn)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert set().union(*map(_actions, doc["Statement"])) == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    assert by_sid["ReadInputAndArtifacts"]["Resource"] == [
        "arn:aws:s3:::my-ctr-bucket/ctr-pipeline/artifacts/*", "arn:aws:s3:::my-ctr-bucket/logs/*"]
    assert _actions(by_sid["ReadInputAndArtifacts"]) == {"s3:GetObject"}
    assert by_sid["ReadWriteRuns"]["Resource"] == [
        "arn:aws:s3:::my-ctr-bucket/ctr-pipeline/artifacts/mrjob-tmp/*", "arn:aws:s3:::my-ctr-bucket/runs/*"]
    assert by_sid["WriteLogs"]["Resource"] == ["arn:aws:s3:::my-ctr-bucket/emr-logs/*"]
    assert _actions(by_sid["WriteLogs"]) == {"s3:PutObject"}
    (listing,) = [s for s in doc["Statement"] if _actions(s) == {"s3:ListBucket"}]
    assert listing["Resource"] == "arn:aws:s3:::my-ctr-bucket"
    assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == {
        p + suffix for p in ("logs/", "runs/", "emr-logs/", "ctr-pipeline/artifacts/",
                             "ctr-pipeline/artifacts/mrjob-tmp/") for suffix in ("", "*")}
    resources = [r for s in doc["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                       else s["Resource"])]
    assert all(r.startswith("arn:aws:s3:::my-ctr-bucket") and r.count("*") <= 1 and not r.endswith("bucket/*")
               for r in resources), resources
    json.dumps(doc)


def test_instance_role_lists_each_bucket_separately():
    defn = load(DEFAULT, {"data": {"input_prefixes": ["s3://raw-logs/2024/"]}})
    listings = [s for s in instance_role_policy(defn)["Statement"] if _actions(s) == {"s3:ListBucket"}]
    assert sorted(s["Resource"] for s in listings) == ["arn:aws:s3:::my-ctr-bucket", "arn:aws:s3:::raw-logs"]
    raw = next(s for s in listings if s["Resource"].endswith("raw-logs"))
    assert sorted(raw["Condition"]["StringLike"]["s3:prefix"]) == ["2024/", "2024/*"]


def test_service_role_is_the_managed_policy_plus_passing_the_instance_role_to_ec2():
    service = service_role_policies(load(DEFAULT), "123456789012")
    assert service["managed_policy_arns"] == [EMR_SERVICE_POLICY_ARN]
    assert EMR_SERVICE_POLICY_ARN == "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
    (passrole,) = service["inline_policy"]["Statement"]
    assert passrole["Action"] == "iam:PassRole" and passrole["Effect"] == "Allow"
    assert passrole["Resource"] == "arn:aws:iam::123456789012:role/ctr-pipeline-emr-instance"
    assert passrole["Condition"] == {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}}
    assert service["required_tags"] == {"for-use-with-amazon-emr-managed-policies": "true"}
    trust = trust_policy("elasticmapreduce.amazonaws.com", "123456789012")["Statement"][0]
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert "Condition" not in trust_policy("ec2.amazonaws.com", "123456789012")["Statement"][0]


# ---------------------------------------------------------------------------------------------- mrjob.conf

@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_mrjob_conf_uses_real_mrjob_options(path):
    from mrjob.emr import EMRJobRunner

    defn = load(path)
    opts = mrjob_conf(defn, "http://127.0.0.1:1", wheel_uri="s3://b/w.whl", bootstrap_uri="s3://b/boot.sh")
    opts = opts["runners"]["emr"]
    assert set(opts) <= set(EMRJobRunner.OPT_NAMES), set(opts) - set(EMRJobRunner.OPT_NAMES)
    req = defn.run_job_flow_request()
    assert (opts["region"], opts["release_label"]) == (defn.region, defn.release_label)
    assert (opts["iam_service_role"], opts["iam_instance_profile"]) == (req["ServiceRole"], req["JobFlowRole"])
    assert opts["bootstrap"] == ["bash s3://b/boot.sh# s3://b/w.whl /usr/bin/python3.11"]
    assert opts["python_bin"] == ["/usr/bin/python3.11"] and opts["emr_configurations"] == req["Configurations"]
    assert opts.get("instance_fleets", opts.get("instance_groups")) == \
        req["Instances"].get("InstanceFleets", req["Instances"].get("InstanceGroups"))
    assert opts["cloud_tmp_dir"] == defn.artifact("mrjob-tmp/") and opts["cloud_log_dir"] == defn.log_uri
    assert opts["extra_cluster_params"]["AutoTerminationPolicy"] == req["AutoTerminationPolicy"]
    assert opts["max_mins_idle"] == defn.idle_timeout_seconds // 60
    assert opts["pool_clusters"] is True and opts["pool_name"] == defn.name
    assert opts["s3_endpoint"] == opts["emr_endpoint"] == "http://127.0.0.1:1"
    assert "s3_endpoint" not in mrjob_conf(defn)["runners"]["emr"]
    yaml.safe_dump(opts)


# ---------------------------------------------------------------------------------------------- bootstrap.sh

def test_bootstrap_installs_the_wheel_and_its_requirements_but_not_pyspark(tmp_path):
    """bootstrap.sh with stand-ins for `aws`, `sudo` and pip (a python that logs `-m pip ...`)."""
    s3, bin_dir, log = tmp_path / "s3", tmp_path / "bin", tmp_path / "pip.log"
    wheel = s3 / "bucket" / "wheels" / "ctr_pipeline-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    bin_dir.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("ctr_pipeline-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: ctr-pipeline\n"
                   "Requires-Dist: pyspark<3.6,>=3.5\nRequires-Dist: pandas<3,>=2.0\nRequires-Dist: mrjob==0.7.4\n"
                   "Requires-Dist: PySpark_Stubs>=1\nRequires-Dist: pytest>=8; extra == \"dev\"\n\n")
    stubs = {
        "aws": f'#!/bin/bash\nsrc="${{@: -2:1}}"; cp "{s3}/${{src#s3://}}" "${{@: -1}}"\n',
        "sudo": '#!/bin/bash\nexec "$@"\n',
        "fakepython": f'#!/bin/bash\nif [ "$1 $2" = "-m pip" ]; then shift 2; echo "pip $*" >> "{log}"\n'
                      f'  for a in "$@"; do [ -f "$a" ] && [[ "$a" == *.txt ]] && cp "$a" "{tmp_path}/req.txt"; done\n'
                      f'  exit 0\nfi\nexec "{sys.executable}" "$@"\n',
    }
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(BOOTSTRAP_SCRIPT), f"s3://bucket/wheels/{wheel.name}",
                           str(bin_dir / "fakepython")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "req.txt").read_text().split() == ["pandas<3,>=2.0", "mrjob==0.7.4", "PySpark_Stubs>=1"]
    calls = log.read_text().splitlines()
    assert calls[0] == "pip --version"
    assert calls[-2].startswith("pip install --quiet --disable-pip-version-check") and "-r" in calls[-2]
    assert "--no-deps" in calls[-1] and calls[-1].endswith("/" + wheel.name)


def test_bootstrap_stops_with_a_message_when_the_python_is_missing(tmp_path):
    done = subprocess.run(["bash", str(BOOTSTRAP_SCRIPT), "s3://b/w.whl", str(tmp_path / "python3.11")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "python3.11 not found (EMR 7.1 and later ship python3.11)" in done.stderr
