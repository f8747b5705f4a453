"""``infra/terraform/envs/local`` applied to a fresh embedded stack: the mappings read back match the
variables, events flow through the Terraform-made pipeline with the local ESM runner, and destroy
removes it all. Terraform talks to the moto server over HTTP, as it would to AWS.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import fastavro
import pytest

from infra import tf
from infra.package import ROOT, build_function
from pipeline import aws
from pipeline.esm.runner import EsmRunner
from pipeline.settings import Settings
from producers.cli import produce

TERRAFORM = tf.terraform_binary()
MIRROR = tf.find_mirror() if TERRAFORM else None

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on the PATH"),
    pytest.mark.skipif(
        TERRAFORM is not None and MIRROR is None,
        reason="no provider mirror holding registry.terraform.io/hashicorp/aws (set TF_PROVIDER_MIRROR)",
    ),
]

EVENTS = 300
SHARDS = 2

# Settings deliberately unlike the module's defaults, so a value that does not reach the API shows.
ESM = {
    "lake-writer": {
        "batch_size": 250,
        "maximum_batching_window_in_seconds": 0,
        "parallelization_factor": 2,
        "maximum_retry_attempts": 3,
        "maximum_record_age_in_seconds": 3600,
        "bisect_batch_on_function_error": True,
        "report_batch_item_failures": True,
        "starting_position": "TRIM_HORIZON",
    },
    "state-writer": {
        "batch_size": 120,
        "maximum_batching_window_in_seconds": 0,
        "parallelization_factor": 1,
        "maximum_retry_attempts": 5,
        "maximum_record_age_in_seconds": -1,
        "bisect_batch_on_function_error": False,
        "report_batch_item_failures": True,
        "starting_position": "TRIM_HORIZON",
    },
}
FUNCTIONS = {
    "lake-writer": {"memory_size": 512, "timeout": 30, "log_level": "DEBUG"},
    "state-writer": {"memory_size": 256, "timeout": 20},
}


def _stub_layer(path: Path) -> Path:
    # The local runtime imports the dependencies from the checkout's virtualenv, so the layer's
    # content is never loaded here; the layer resource and its attachment are what is exercised.
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("python/README.txt", "dependencies come from the local virtualenv\n")
    return path


def _qualifier(function_arn: str) -> str:
    parts = function_arn.split(":function:")[1].split(":")
    return parts[1] if len(parts) > 1 else ""


def _check_mappings(settings: Settings, outputs: dict[str, Any]) -> None:
    lam = aws.client("lambda", settings)
    sqs = aws.client("sqs", settings)
    kinesis = aws.client("kinesis", settings)
    stream_arn = kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    mappings = lam.list_event_source_mappings(EventSourceArn=stream_arn)["EventSourceMappings"]
    by_function = {m["FunctionArn"].split(":function:")[1].split(":")[0]: m for m in mappings}
    assert sorted(by_function) == ["pipeline-lake-writer", "pipeline-state-writer"]
    for consumer, want in ESM.items():
        m = by_function[f"pipeline-{consumer}"]
        alias = lam.get_alias(FunctionName=f"pipeline-{consumer}", Name="live")
        # AWS reports the alias ARN it was given; moto resolves the alias to its version.
        assert _qualifier(m["FunctionArn"]) in ("live", alias["FunctionVersion"]), m["FunctionArn"]
        assert alias["FunctionVersion"] == outputs["functions"][consumer]["version"] != "$LATEST"
        assert m["BatchSize"] == want["batch_size"]
        # Terraform leaves zero and false out of the request; AWS answers them, moto leaves them out.
        assert m.get("MaximumBatchingWindowInSeconds", 0) == want["maximum_batching_window_in_seconds"]
        assert m["ParallelizationFactor"] == want["parallelization_factor"]
        assert m["MaximumRetryAttempts"] == want["maximum_retry_attempts"]
        assert m["MaximumRecordAgeInSeconds"] == want["maximum_record_age_in_seconds"]
        assert m.get("BisectBatchOnFunctionError", False) is want["bisect_batch_on_function_error"]
        assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert m["StartingPosition"] == want["starting_position"]
        queue_url = sqs.get_queue_url(QueueName=f"{settings.dlq_prefix}-{consumer}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        assert m["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn

        config = lam.get_function_configuration(FunctionName=f"pipeline-{consumer}")
        assert config["Runtime"] == "python3.12"
        assert config["Handler"] == f"consumers.{consumer.replace('-', '_')}.handler.lambda_handler"
        assert config["MemorySize"] == FUNCTIONS[consumer]["memory_size"]
        assert config["Timeout"] == FUNCTIONS[consumer]["timeout"]
        assert config["TracingConfig"]["Mode"] == "Active"
        assert [layer["Arn"] for layer in config["Layers"]] == [outputs["layer_arn"]]
        env = config["Environment"]["Variables"]
        # What the Python side reads must name what Terraform made.
        assert env["PIPELINE_CONSUMER"] == consumer
        assert env["PIPELINE_BUCKET"] == settings.bucket
        assert env["PIPELINE_CHECKPOINT_TABLE"] == settings.checkpoint_table
        assert env["PIPELINE_STATE_TABLE"] == settings.state_table
        assert env["PIPELINE_EVENT_ID_TABLE"] == settings.event_id_table
        assert env["LOG_LEVEL"] == FUNCTIONS[consumer].get("log_level", "INFO")


def _check_storage(settings: Settings) -> None:
    s3 = aws.client("s3", settings)
    ddb = aws.client("dynamodb", settings)
    rules = s3.get_bucket_encryption(Bucket=settings.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert s3.get_bucket_versioning(Bucket=settings.bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=settings.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    # The TLS-only bucket policy is off here: moto denies on any Deny statement, condition or not.
    prefixes = {
        r.get("Filter", {}).get("Prefix")
        for r in s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    }
    assert {settings.raw_prefix + "/", settings.quarantine_prefix + "/"} <= prefixes
    for table in (settings.checkpoint_table, settings.state_table, settings.event_id_table):
        desc = ddb.describe_table(TableName=table)["Table"]
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        backups = ddb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=settings.event_id_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"


def _lake_events(settings: Settings) -> list[dict[str, Any]]:
    s3 = aws.client("s3", settings)
    events = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=settings.lake_prefix
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
            events.extend(fastavro.reader(io.BytesIO(body)))
    return events


def _state_total(settings: Settings) -> int:
    ddb = aws.client("dynamodb", settings)
    total = 0
    for page in ddb.get_paginator("scan").paginate(TableName=settings.state_table):
        total += sum(int(item["events"]["N"]) for item in page["Items"])
    return total


def test_local_env_applies_runs_events_and_destroys(settings: Settings, tmp_path: Path) -> None:
    """Apply envs/local, check the mappings against the variables, run events, destroy."""
    assert MIRROR is not None
    settings = replace(settings, shard_count=SHARDS)
    work = tmp_path / "infra" / "terraform"
    shutil.copytree(
        ROOT / "infra" / "terraform", work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    # The module reads the dashboard body from the package, two levels above infra/terraform.
    (tmp_path / "pipeline" / "observability").mkdir(parents=True)
    shutil.copy(
        ROOT / "pipeline" / "observability" / "dashboard.json", tmp_path / "pipeline" / "observability"
    )
    env_dir = work / "envs" / "local"
    env = tf.environment(tf.write_cli_config(tmp_path / "tfcli", MIRROR))
    function_zip = build_function(tmp_path / "function.zip")
    variables = {
        "port": settings.port,
        "region": settings.region,
        "shard_count": SHARDS,
        "function_zip": str(function_zip.path),
        "layer_zip": str(_stub_layer(tmp_path / "layer.zip")),
        "functions": FUNCTIONS,
        "esm": ESM,
    }
    (env_dir / "test.auto.tfvars.json").write_text(json.dumps(variables))

    tf.run(["init", "-backend=false", "-input=false", "-no-color"], env_dir, env)
    with tf.shared_provider(env_dir, env) as env:
        _apply_run_destroy(settings, env_dir, env, tmp_path)
    lam = aws.client("lambda", settings)
    assert lam.list_functions()["Functions"] == []
    assert aws.client("kinesis", settings).list_streams()["StreamNames"] == []


def _apply_run_destroy(settings: Settings, env_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    applied = False
    try:
        tf.run(["apply", "-auto-approve", "-input=false", "-no-color"], env_dir, env)
        applied = True
        outputs = {
            k: v["value"] for k, v in json.loads(tf.run(["output", "-json"], env_dir, env).stdout).items()
        }
        assert outputs["stream_name"] == settings.stream_name
        assert outputs["bucket"] == settings.bucket
        _check_mappings(settings, outputs)
        _check_storage(settings)
        dashboards = aws.client("cloudwatch", settings).list_dashboards()["DashboardEntries"]
        assert [d["DashboardName"] for d in dashboards] == ["pipeline-pipeline"]

        produced = produce(settings, EVENTS, customers=50, seed=7, quiet=True)
        assert produced["user_records"] == EVENTS
        runner = EsmRunner(settings, tmp_path / "esm-state")
        try:
            assert runner.run_until_drained(timeout=120), "the local ESM runner did not drain the stream"
        finally:
            runner.stop()
        lake = _lake_events(settings)
        assert len(lake) == EVENTS
        assert len({e["event_id"] for e in lake}) == EVENTS
        assert _state_total(settings) == EVENTS
        checkpoints = aws.client("dynamodb", settings).scan(TableName=settings.checkpoint_table)["Items"]
        consumers = {item["pk"]["S"].split("#")[0] for item in checkpoints}
        assert consumers == {"lake-writer", "state-writer"}
    finally:
        if applied:
            tf.run(["destroy", "-auto-approve", "-input=false", "-no-color", "-refresh=false"], env_dir, env)
    state = json.loads((env_dir / "terraform.tfstate").read_text())
    assert state["resources"] == []
