"""The mrjob.conf of mrjob's EMR runner, generated from the same cluster definition as the launcher's."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .definition import ClusterDefinition


def mrjob_conf(defn: "ClusterDefinition", endpoint_url: Optional[str] = None) -> dict:
    """``{"runners": {"emr": {...}}}``: instance types and counts (or fleets), bootstrap installing the
    project's wheel, region, roles, release, log and temp locations, tags, idle timeout, Spark sizing.
    ``endpoint_url`` (moto in tests) becomes mrjob's S3 and EMR endpoints."""
    opts: dict = {
        "region": defn.region, "release_label": defn.release_label,
        "iam_service_role": defn.service_role, "iam_instance_profile": defn.instance_profile,
        "cloud_log_dir": defn.log_uri, "cloud_tmp_dir": defn.artifact("mrjob-tmp/"),
        "python_bin": [defn.python], "tags": {str(k): str(v) for k, v in defn.tags.items()},
        "max_mins_idle": max(1, defn.idle_timeout_seconds // 60),
        "bootstrap": [f"bash {defn.bootstrap_uri}# {defn.wheel_uri} {defn.python}"],
        "emr_configurations": defn.configurations(),
        "applications": list(defn.applications),
    }
    if defn.fleets:
        opts["instance_fleets"] = defn.instances()["InstanceFleets"]
    else:
        opts.update(master_instance_type=defn.master.types[0], core_instance_type=defn.core.types[0],
                    num_core_instances=defn.core.count)
    if defn.subnet_id:
        opts["subnet"] = defn.subnet_id
    if defn.key_name:
        opts["ec2_key_pair"] = defn.key_name
    if endpoint_url:
        opts.update(s3_endpoint=endpoint_url, emr_endpoint=endpoint_url)
    return {"runners": {"emr": opts}}
