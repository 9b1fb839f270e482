"""Per-task settings, applied to the tasks of the pipeline being defined: each task gets what its component
declares (``yolo_kfp.components.step_settings``: image, timeout, retries, CPU and memory, the data connection,
MLflow's credentials, a GPU node, caching), sized and placed by the compile options
(``yolo_kfp.pipeline.compile_options``). Nothing here lists the steps.
"""

from typing import Any

from kfp import kubernetes
from kfp.dsl import pipeline_context

from yolo_kfp.components import step_settings
from yolo_kfp.components.step_settings import Resources
from yolo_kfp.infra.storage import ENV_KEYS
from yolo_kfp.model.tracking import CREDENTIAL_KEYS
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.release.oci_client import AUTH_VARIABLE

GPU_RESOURCE = "nvidia.com/gpu"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
REGISTRY_KEY = ".dockerconfigjson"  # the key of a kubernetes.io/dockerconfigjson Secret
TOLERATION_ARGUMENTS = {"tolerationSeconds": "toleration_seconds"}  # kfp.kubernetes.add_toleration's name


def apply_step_settings(options: CompileOptions) -> None:
    """Every task of the pipeline being defined gets what its component declares
    (``yolo_kfp.components.step_settings``), as the compile options size and place it."""
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    assert pipeline is not None, "apply_step_settings is called inside a pipeline's definition"
    for task in pipeline.tasks.values():
        settings = step_settings.SETTINGS[task.component_spec.name]
        task.container_spec.image = options.images[settings.image]
        kubernetes.set_timeout(task, settings.timeout_hours * 3600)
        if options.target.features.security_context:  # the images run as UID 1001 (images/*.Containerfile)
            kubernetes.set_security_context(task, run_as_non_root=True)
        if settings.retries:
            task.set_retry(num_retries=settings.retries, backoff_duration=f"{settings.retry_backoff_seconds}s",
                           backoff_factor=2, backoff_max_duration="1h")
        if settings.data_connection:
            with_data_connection(task, options.data_connection)
        if settings.mlflow_connection and options.mlflow_secret:
            kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret,
                                         secret_key_to_env={k: k for k in CREDENTIAL_KEYS}, optional=True)
        if settings.registry_connection and options.registry_secret_name:
            kubernetes.use_secret_as_env(task, secret_name=options.registry_secret_name,
                                         secret_key_to_env={REGISTRY_KEY: AUTH_VARIABLE}, optional=True)
        if settings.gpu:
            on_gpu_node(task, options)
        else:
            sized(task, options.resources(task.component_spec.name))
        if not settings.cache:
            task.set_caching_options(False)


def sized(task, resources: Resources) -> None:
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory_limit)


def with_data_connection(task, secret_name) -> None:
    """The data connection's keys as environment variables; a run without S3 needs no such Secret (on
    servers that apply ``optional``, ``servers``)."""
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env={k: k for k in ENV_KEYS},
                                 optional=True)


def on_gpu_node(task, options: CompileOptions) -> None:
    """GPUs, CPU and memory scaled by the GPU count (limits equal to requests: the pod holds the node's GPUs
    anyway), a /dev/shm the memory limit covers, the GPU taint and the extra tolerations tolerated, the
    node selector, and the Kueue queue if any."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(options.gpus)
    sized(task, Resources(cpu=options.train_cpu, cpu_limit=options.train_cpu, memory=options.train_memory))
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    for toleration in options.gpu_tolerations:
        fields: dict[str, Any] = toleration
        kubernetes.add_toleration(task, **{TOLERATION_ARGUMENTS.get(k, k): v for k, v in fields.items()})
    for label, value in options.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label, value)
    if options.kueue_queue:
        kubernetes.add_pod_label(task, KUEUE_QUEUE_LABEL, options.kueue_queue)
    if options.shm_mount == "ephemeral":
        kubernetes.add_ephemeral_volume(task, volume_name="dshm", mount_path="/dev/shm",
                                        access_modes=["ReadWriteOnce"], size=options.shm_limit)
    else:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_limit)

