"""The one place that creates AWS clients: boto3 clients (EMR, S3, IAM) and pyarrow's S3 file system.

Settings are the region and an optional endpoint (a moto server in tests, an S3-compatible store);
credentials are never part of them: boto3, pyarrow and Spark's S3A each read the standard chain
(environment, AWS config files, instance profile). Nothing here runs at import time, and boto3 and
pyarrow are imported only when a client is made.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlparse

DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class AwsSettings:
    """Region and endpoint of every AWS request this process makes (picklable: executors get it too)."""

    region: str = DEFAULT_REGION
    endpoint_url: Optional[str] = None

    @classmethod
    def from_env(cls, region: Optional[str] = None, endpoint_url: Optional[str] = None) -> "AwsSettings":
        """Explicit values first, then AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL(_S3)."""
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        if not endpoint_url:
            endpoint_url = next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)
        return cls(region=region, endpoint_url=endpoint_url or None)

    @classmethod
    def from_config(cls, cfg: Any) -> "AwsSettings":
        """From a :class:`~ctr_pipeline.schema.Config`: ``aws.region`` (unless left at its default and the
        environment names one) and ``aws.endpoint_url``."""
        explicit_region = cfg.aws.region if cfg.source_of("aws.region") != "default" else None
        return cls.from_env(explicit_region, cfg.aws.endpoint_url)


@functools.lru_cache(maxsize=32)
def client(service: str, settings: AwsSettings = AwsSettings()) -> Any:
    """A boto3 client for ``service`` ('s3', 'emr', 'iam', ...) with standard retries (8 attempts)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 8, "mode": "standard"}, user_agent_extra="ctr-pipeline")
    return boto3.session.Session().client(service, region_name=settings.region,
                                          endpoint_url=settings.endpoint_url, config=config)


def s3_filesystem(settings: AwsSettings) -> Any:
    """pyarrow's S3 file system for ``settings`` (path-style addressing when an endpoint is given)."""
    from pyarrow import fs

    kwargs: dict[str, Any] = {"region": settings.region}
    if settings.endpoint_url:
        parsed = urlparse(settings.endpoint_url)
        kwargs.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https",
                      force_virtual_addressing=False)
    return fs.S3FileSystem(**kwargs)


def spark_s3_conf(settings: AwsSettings) -> dict[str, str]:
    """Hadoop S3A properties pointing ``s3://`` and ``s3a://`` at a custom endpoint (none without one).

    On EMR no endpoint is set and ``s3://`` is EMRFS; locally the S3A connector jars must be on
    ``spark.jars`` (tests fetch them, see tests/s3a_jars.py).
    """
    if not settings.endpoint_url:
        return {}
    secure = urlparse(settings.endpoint_url).scheme == "https"
    return {
        "spark.hadoop.fs.s3a.endpoint": settings.endpoint_url,
        "spark.hadoop.fs.s3a.endpoint.region": settings.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(secure).lower(),
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider,"
            "com.amazonaws.auth.DefaultAWSCredentialsProviderChain",
    }
