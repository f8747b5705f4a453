"""Creates the pipeline's resources in a stack (idempotent): the stream, the bucket, the tables,
the on-failure queues, the consumer functions and one event source mapping per consumer.

The same resources are what ``infra/terraform`` declares for AWS; here they are made with boto3
so the embedded stack comes up in a second without Terraform.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.settings import Settings

ROLE_NAME = "pipeline-consumer"


@dataclass(frozen=True, slots=True)
class Consumer:
    """One consumer function and its mapping's settings."""

    name: str
    handler: str
    batch_size: int = 1000
    window_seconds: int = 0
    parallelization_factor: int = 1
    max_retries: int = 10
    bisect: bool = True
    timeout: int = 60
    memory: int = 1024


CONSUMERS = (
    Consumer("lake-writer", "consumers.lake_writer.handler.lambda_handler"),
    Consumer("state-writer", "consumers.state_writer.handler.lambda_handler"),
)


def function_name(settings: Settings, consumer: str) -> str:
    """The Lambda function name of a consumer."""
    return f"pipeline-{consumer}"


def dlq_name(settings: Settings, consumer: str) -> str:
    """The on-failure queue of a consumer."""
    return f"{settings.dlq_prefix}-{consumer}"


def _ignore(code: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in code.split("|"):
            raise
        return None


def _placeholder_zip() -> bytes:
    # The local runtime imports handlers from the checkout; the function's code zip only has to
    # exist. ``make package`` builds the real one for AWS.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "code is served from the checkout by the local runtime\n")
    return buf.getvalue()


def bootstrap(
    settings: Settings, consumers: tuple[Consumer, ...] = CONSUMERS, enabled: bool = True
) -> dict[str, Any]:
    """Create whatever is missing; return the ARNs of what exists.

    ``enabled=False`` creates the mappings disabled (for LocalStack, whose own poller must stay idle
    while the pipeline's runner runs them).
    """
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    ddb = aws.client("dynamodb", settings)
    sqs = aws.client("sqs", settings)
    iam = aws.client("iam", settings)
    lam = aws.client("lambda", settings)

    _ignore(
        "ResourceInUseException",
        kinesis.create_stream,
        StreamName=settings.stream_name,
        ShardCount=settings.shard_count,
    )
    for _ in range(100):
        desc = kinesis.describe_stream_summary(StreamName=settings.stream_name)
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    stream_arn = desc["StreamDescriptionSummary"]["StreamARN"]

    kw: dict[str, Any] = {}
    if settings.region != "us-east-1":
        kw["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    _ignore("BucketAlreadyOwnedByYou|BucketAlreadyExists", s3.create_bucket, Bucket=settings.bucket, **kw)

    tables = {
        settings.checkpoint_table: "pk",
        settings.state_table: "customer_id",
        settings.event_id_table: "event_id",
    }
    for table, key in tables.items():
        _ignore(
            "ResourceInUseException",
            ddb.create_table,
            TableName=table,
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    _ignore(
        "ValidationException",
        ddb.update_time_to_live,
        TableName=settings.event_id_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )

    role = _ignore(
        "EntityAlreadyExists",
        iam.create_role,
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
            '{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
        ),
    )
    role_arn = (role or iam.get_role(RoleName=ROLE_NAME))["Role"]["Arn"]

    existing = {
        m["FunctionArn"].split(":function:")[1].split(":")[0]
        for m in lam.list_event_source_mappings(EventSourceArn=stream_arn)["EventSourceMappings"]
    }
    out: dict[str, Any] = {"stream_arn": stream_arn, "functions": {}}
    for c in consumers:
        name = function_name(settings, c.name)
        queue_url = sqs.create_queue(QueueName=dlq_name(settings, c.name))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        _ignore(
            "ResourceConflictException",
            lam.create_function,
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler=c.handler,
            Code={"ZipFile": _placeholder_zip()},
            Timeout=c.timeout,
            MemorySize=c.memory,
            Environment={"Variables": settings.function_env(c.name)},
        )
        if name not in existing:
            lam.create_event_source_mapping(
                FunctionName=name,
                EventSourceArn=stream_arn,
                StartingPosition="TRIM_HORIZON",
                BatchSize=c.batch_size,
                MaximumBatchingWindowInSeconds=c.window_seconds,
                ParallelizationFactor=c.parallelization_factor,
                MaximumRetryAttempts=c.max_retries,
                BisectBatchOnFunctionError=c.bisect,
                FunctionResponseTypes=["ReportBatchItemFailures"],
                DestinationConfig={"OnFailure": {"Destination": queue_arn}},
                Enabled=enabled,
            )
        out["functions"][c.name] = {"function": name, "dlq": queue_url}
    return out
