"""The CloudWatch dashboard of the pipeline's metrics: ``dashboard.json`` is a template whose
``${name}`` placeholders Terraform's ``templatefile`` (or ``body``) fills in.

>>> body(region="eu-west-1", stream_name="pipeline-events")           # doctest: +SKIP
'{"widgets": [...]}'
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from pipeline.observability.metrics import NAMESPACE

TEMPLATE = Path(__file__).with_name("dashboard.json")
VARIABLES = ("region", "namespace", "stream_name", "lake_function", "state_function", "lake_dlq", "state_dlq")


def body(
    region: str,
    stream_name: str,
    namespace: str = NAMESPACE,
    lake_function: str = "pipeline-lake-writer",
    state_function: str = "pipeline-state-writer",
    lake_dlq: str = "pipeline-on-failure-lake-writer",
    state_dlq: str = "pipeline-on-failure-state-writer",
) -> str:
    """The dashboard body (JSON text for PutDashboard) with every placeholder filled in."""
    text = string.Template(TEMPLATE.read_text()).substitute(
        region=region,
        namespace=namespace,
        stream_name=stream_name,
        lake_function=lake_function,
        state_function=state_function,
        lake_dlq=lake_dlq,
        state_dlq=state_dlq,
    )
    return json.dumps(json.loads(text), separators=(",", ":"))
