"""Run by ``server_schemas.parse_errors`` under one server's schemas (``python -S``, its own path): reads
``[pipeline_spec, platform_spec]`` as JSON on stdin and prints {part: error} for what does not parse
strictly, as the server's API server and driver parse it."""

import json
import sys

from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2


def strict_error(message, value: dict) -> str | None:
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        return str(error)
    return None


def main() -> None:
    pipeline_spec, platform_spec = json.load(sys.stdin)
    errors = {"pipeline spec": strict_error(pipeline_spec_pb2.PipelineSpec(), pipeline_spec),
              "platform spec": strict_error(pipeline_spec_pb2.PlatformSpec(), platform_spec)}
    executors = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, config in executors.items():
        errors[name] = strict_error(kubernetes_executor_config_pb2.KubernetesExecutorConfig(), config)
    json.dump({part: error for part, error in errors.items() if error}, sys.stdout)


if __name__ == "__main__":
    main()
