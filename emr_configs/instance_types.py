"""vCPUs and YARN memory of the EC2 instance types the cluster definitions may use (pure data).

``vcpus`` and ``memory_gib`` are EC2's published sizes. ``yarn_mib`` approximates EMR's default
``yarn.nodemanager.resource.memory-mb`` for the type (EMR's "task configuration" tables for the
instance family; EMR keeps the rest for the OS and its daemons). They are approximations: a definition
that sizes executors within a few percent of the limit should be checked on a real node.
"""
from __future__ import annotations

from typing import NamedTuple


class InstanceType(NamedTuple):
    vcpus: int           # EC2 vCPUs
    memory_gib: float    # EC2 memory, GiB
    yarn_mib: int        # approx. EMR default yarn.nodemanager.resource.memory-mb, MiB
    gpus: int = 0        # NVIDIA GPUs (g5: one A10G each up to 8xlarge)


INSTANCE_TYPES: dict[str, InstanceType] = {
    "m5.xlarge": InstanceType(4, 16, 12288),
    "m5.2xlarge": InstanceType(8, 32, 24576),
    "m5.4xlarge": InstanceType(16, 64, 57344),
    "m5.8xlarge": InstanceType(32, 128, 122880),
    "m6i.xlarge": InstanceType(4, 16, 12288),
    "m6i.2xlarge": InstanceType(8, 32, 24576),
    "m6i.4xlarge": InstanceType(16, 64, 57344),
    "m6i.8xlarge": InstanceType(32, 128, 122880),
    "r5.xlarge": InstanceType(4, 32, 24576),
    "r5.2xlarge": InstanceType(8, 64, 57344),
    "r5.4xlarge": InstanceType(16, 128, 122880),
    "c5.xlarge": InstanceType(4, 8, 6144),
    "c5.2xlarge": InstanceType(8, 16, 12288),
    "c5.4xlarge": InstanceType(16, 32, 24576),
    "g5.xlarge": InstanceType(4, 16, 12288, gpus=1),
    "g5.2xlarge": InstanceType(8, 32, 24576, gpus=1),
    "g5.4xlarge": InstanceType(16, 64, 57344, gpus=1),
}
