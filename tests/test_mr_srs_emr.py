"""The mrjob sampler with mrjob's EMR runner against moto's server, up to step submission (moto's
steps never run): the cluster comes from the same definition as the launcher's, inputs and the job
are in S3."""
import pytest
import yaml

from emr_configs.definition import load
from emr_configs.mrjob_conf import mrjob_conf
from sampling import mr_srs

from .conftest import REPO

BUCKET = "ctr-mrjob-test"


class Submitted(Exception):
    """Raised instead of waiting for moto's steps, which never finish."""


def test_count_phase_is_submitted_to_emr_with_the_definition(aws, tmp_path, monkeypatch):
    from mrjob.emr import EMRJobRunner

    from ctr_pipeline.aws import client

    s3, emr = client("s3", aws), client("emr", aws)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="run/_mrjob/input/part-00000.json",
                  Body=b"".join(b'{"row_id": %d, "label": %d}\n' % (i, i % 2) for i in range(100)))
    definition = tmp_path / "cluster.yaml"
    definition.write_text((REPO / "emr_configs" / "default.yaml").read_text().replace("my-ctr-bucket", BUCKET))
    defn = load(definition)
    conf = tmp_path / "mrjob.conf"
    conf.write_text(yaml.safe_dump(mrjob_conf(defn, aws.endpoint_url)))

    def stop(self):
        raise Submitted(self._cluster_id)

    monkeypatch.setattr(EMRJobRunner, "_wait_for_steps_to_complete", stop)
    with pytest.raises(Submitted) as got:
        mr_srs._run_phase("count", [f"s3://{BUCKET}/run/_mrjob/input/"], "emr", "label", conf_path=str(conf))
    cluster_id = str(got.value)

    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-7.5.0" and cluster["ServiceRole"] == "ctr-pipeline-emr-service"
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == "ctr-pipeline-emr-instance"
    groups = {g["InstanceGroupType"]: g for g in emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]}
    assert groups["MASTER"]["InstanceType"] == "m5.xlarge" and groups["CORE"]["InstanceType"] == "m5.2xlarge"
    assert groups["CORE"]["RequestedInstanceCount"] == 2
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    args = step["Config"]["Args"]
    assert args[0] == "hadoop-streaming" and args[args.index("-input") + 1] == f"s3://{BUCKET}/run/_mrjob/input/"
    mapper = args[args.index("-mapper") + 1]
    assert "mr_srs.py" in mapper and "--phase count" in mapper and "--stratify-by label" in mapper, mapper
    tmp_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="ctr-pipeline/artifacts/mrjob-tmp/")
                .get("Contents", [])]
    assert any(k.endswith("/mr_srs.py") for k in tmp_keys), tmp_keys
    # mrjob wraps the definition's bootstrap command into its own master script: it must run ours
    (action,) = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    script_key = action["ScriptPath"][len(f"s3://{BUCKET}/"):]
    script = s3.get_object(Bucket=BUCKET, Key=script_key)["Body"].read().decode()
    assert "bootstrap.sh" in script and defn.wheel_uri in script and defn.python in script, script


def test_emr_runner_needs_an_s3_run_directory(tmp_path, demo_tsv, capsys):
    from ctr_pipeline.cli import main

    argv = ["sample", "--input", str(demo_tsv), "--out", str(tmp_path / "run"), "--engine", "mrjob",
            "--set", "sampling.mrjob_runner=emr"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sampling.mrjob_runner 'emr' reads and writes S3" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "splits").exists()
