"""The rule of the run parameter ``publish_oci``: a repository to push to, and only with ``publish_to``."""

from yolo_kfp.infra.oci_reference import repository_problems


def publish_oci_problems(value: str, p: dict) -> list[str]:
    if not value:
        return []
    problems = repository_problems("publish_oci", value)
    if not p.get("publish_to"):
        problems.append("publish_oci needs publish_to: the publish step pushes the image after it publishes the "
                        "model to S3; set publish_to (s3://bucket/prefix) too")
    return problems
