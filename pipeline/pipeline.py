"""The pipeline: download (sharded) -> convert -> [search: trials on GPU nodes] -> train (GPU node) -> evaluate.

This is the wiring: which step runs on which outputs. The pipeline function's signature and its ``Args:`` are
made from the parameter table (``yolo_kfp/params/run_parameters.py``), which the compiled YAML's form in the Data
Science Pipelines UI, ``yolo-kfp run-local --param`` and the notebook all follow. Settings KFP cannot take as run
parameters are compile options (``compile_options``), recorded in the pipeline's description; each task's
image, timeout, retries, size and secrets come from its component's declaration (``task_settings``).
"""

import inspect
from typing import Any, NamedTuple

from google.protobuf import json_format
from kfp import dsl, kubernetes
from kfp.compiler import pipeline_spec_builder
from kfp.dsl import HTML, Artifact, Model
from kfp.pipeline_spec import pipeline_spec_pb2

from yolo_kfp.components.convert import convert
from yolo_kfp.components.download import download, download_shard, merge_download, plan_download
from yolo_kfp.components.evaluate import evaluate
from yolo_kfp.components.export import export
from yolo_kfp.components.gate import gate
from yolo_kfp.components.preflight import preflight
from yolo_kfp.components.publish import publish
from yolo_kfp.components.search import choose_trial, no_search
from yolo_kfp.components.track import track
from yolo_kfp.components.train import train
from yolo_kfp.components.train_on_nodes import train_on_nodes
from yolo_kfp.components.train_trial import train_trial
from yolo_kfp.model.node_training import POD_NAME_ENV, POD_NAMESPACE_ENV, POD_UID_ENV
from yolo_kfp.params import run_parameters
from yolo_kfp.params.search_space import SEARCH_REFUSAL_ENV
from yolo_kfp.params.service_hosts import SERVICE_HOSTS_ENV
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import DEFAULT_OPTIONS, CompileOptions
from yolo_kfp.pipeline.task_settings import apply_step_settings
from yolo_kfp.release.gate import PROMOTE

PIPELINE_NAME = "yolo-kfp"
PIPELINE_DOC = ("Open Images subset -> YOLO labels -> YOLOv5 transfer learning -> test-split metrics -> published "
                "model.")
MESSAGES: Any = pipeline_spec_pb2  # generated protobuf classes, which pyright cannot see

# What a run hands back (run-local gathers these into its output dir).
class Outputs(NamedTuple):
    model: Model
    metrics: Artifact
    report: HTML
    onnx_model: Model


def make_pipeline(options: CompileOptions = DEFAULT_OPTIONS):
    """Builds the pipeline function for ``options``."""

    def define(p: dict) -> Outputs:
        """The tasks of a run with the parameters ``p`` (pipeline channels, by name)."""
        checks = preflight(**{name: p[name] for name in preflight.component_spec.inputs or {}})
        if not options.target.features.fan_in:  # a search_space is refused before any work
            checks.set_env_variable(SEARCH_REFUSAL_ENV, servers.search_refusal(options.target))
        if options.service_hosts:  # where the run may send credentials (yolo_kfp.params.service_hosts)
            checks.set_env_variable(SERVICE_HOSTS_ENV, ",".join(options.service_hosts))
        raw_dataset = downloaded(options, checks, p)
        convert_task = convert(raw_dataset=raw_dataset, classes=p["classes"], seed=p["seed"],
                               split_ratios=p["split_ratios"], include_group_of=p["include_group_of"],
                               extra_data=p["extra_data"], extra_data_fingerprint=checks.outputs["fingerprint"],
                               extra_data_format=p["extra_data_format"], class_map=p["class_map"],
                               allow_missing_classes=p["allow_missing_classes"])
        training = {"training": checks.outputs["training"], "mlflow_tracking_uri": p["mlflow_tracking_uri"],
                    "mlflow_experiment": p["mlflow_experiment"]}
        search = search_trials(options, checks, convert_task.outputs["dataset"], training, p) if (
            options.target.features.fan_in) else ""
        train_task = trained(options, convert_task.outputs["dataset"], search, training)
        evaluate_task = evaluate(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                                 imgsz=p["imgsz"], batch=p["batch"])
        export_task = export(model=train_task.outputs["model"], dataset=convert_task.outputs["dataset"],
                             imgsz=p["imgsz"])
        with dsl.If(p["mlflow_tracking_uri"] != "", name="tracking-requested"):
            track(model=train_task.outputs["model"], metrics_json=evaluate_task.outputs["metrics_json"],
                  mlflow_tracking_uri=p["mlflow_tracking_uri"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        with dsl.If(p["publish_to"] != "", name="publish-requested"):
            gate_task = gate(metrics_json=evaluate_task.outputs["metrics_json"],
                             dataset=convert_task.outputs["dataset"], publish_to=p["publish_to"],
                             min_map50=p["min_map50"], max_map50_drop=p["max_map50_drop"], imgsz=p["imgsz"],
                             batch=p["batch"],
                             run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            with dsl.If(gate_task.outputs["Output"] == PROMOTE, name="promoted"):
                publish(model=train_task.outputs["model"], onnx_model=export_task.outputs["onnx_model"],
                        metrics_json=evaluate_task.outputs["metrics_json"],
                        dataset_stats=convert_task.outputs["dataset_stats"], publish_to=p["publish_to"],
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, mlflow_tracking_uri=p["mlflow_tracking_uri"],
                        registered_model_name=p["registered_model_name"],
                        model_registry_url=p["model_registry_url"], publish_oci=p["publish_oci"],
                        modelcar_base=options.modelcar_base)
        apply_step_settings(options)
        outputs: list[Any] = [  # channels of the artifacts Outputs declares, as KFP has a pipeline return them
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"], evaluate_task.outputs["report"],
            export_task.outputs["onnx_model"]]
        return Outputs(*outputs)

    return dsl.pipeline(name=PIPELINE_NAME, description=(
        "Open Images subset (FiftyOne) -> YOLO labels -> YOLOv5 transfer learning (Ultralytics) -> test-split "
        f"metrics. {options.describe()}"))(pipeline_function(define))


def trained(options: CompileOptions, dataset, search, training: dict):
    """The train task: in its own pod, or, with ``--nodes`` above 1, a launcher of the cluster's job across nodes
    that knows its pod (the job's owner) from the downward API."""
    if options.nodes == 1:
        return train(dataset=dataset, gpus=options.gpus, search=search, **training)
    task = train_on_nodes(dataset=dataset, gpus=options.gpus, nodes_job=options.nodes_job, search=search, **training)
    for variable, field in ((POD_NAME_ENV, "metadata.name"), (POD_UID_ENV, "metadata.uid"),
                            (POD_NAMESPACE_ENV, "metadata.namespace")):
        kubernetes.use_field_path_as_env(task, variable, field)
    return task


def downloaded(options: CompileOptions, checks, p: dict):
    """The raw dataset: ``plan-download``, a ``ParallelFor`` of ``download-shard`` tasks (at most
    ``download_parallelism`` at once) and ``merge-download`` collecting them; on a server without fan-in, the one
    ``download`` task that does the same in turn."""
    selection = {"classes": p["classes"], "max_samples_per_class": p["max_samples_per_class"], "split": p["split"],
                 "seed": p["seed"], "shard_size": p["download_shard_size"],
                 "open_images_cache": p["open_images_cache"]}
    if not options.target.features.fan_in:
        return download(**selection).after(checks).outputs["raw_dataset"]
    plan_task = plan_download(**selection).after(checks)
    with dsl.ParallelFor(plan_task.outputs["Output"], parallelism=options.download_parallelism,
                         name="download-shards") as shard:
        shard_task = download_shard(plan=plan_task.outputs["plan"], shard=shard)
    return merge_download(plan=plan_task.outputs["plan"],
                          shards=dsl.Collected(shard_task.outputs["raw_shard"])).outputs["raw_dataset"]


def search_trials(options: CompileOptions, checks, dataset, training: dict, p: dict):
    """The search, where preflight planned trials: one ``train-trial`` GPU task per trial (at most
    ``search_parallelism`` at once), their records gathered by ``choose-trial``. Returns the search's
    ``search.json`` text, or "" from a run without a search (``no-search``, cached: no trial, no GPU).

    ``dsl.If`` and ``dsl.OneOf`` rather than collecting straight into the train step: a collecting
    consumer of an empty ``ParallelFor`` fails in kfp.local and on the KFP backend
    (``yolo_kfp.components.search``)."""
    with dsl.If(checks.outputs["trial_count"] > 0, name="search-requested"):
        with dsl.ParallelFor(checks.outputs["trials"], parallelism=options.search_parallelism,
                             name="search-trials") as trial:
            trial_task = train_trial(dataset=dataset, trial=trial, search_epochs=p["search_epochs"],
                                     gpus=options.gpus, **training)
        chosen = choose_trial(records=dsl.Collected(trial_task.outputs["record"]), search_space=p["search_space"])
    with dsl.Else(name="no-search"):
        nothing = no_search()
    return dsl.OneOf(chosen.output, nothing.output)  # pyright: ignore[reportArgumentType]  (kfp's loose types)


def pipeline_function(define):
    """``yolo_pipeline``: the function KFP reads a pipeline from, its signature and its ``Args:`` (the run form)
    made from the parameter table; KFP calls it with one pipeline channel per parameter, in order."""
    def yolo_pipeline(*channels) -> Outputs:
        return define(dict(zip(run_parameters.BY_NAME, channels, strict=True)))

    yolo_pipeline.__signature__ = inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.kind)
         for p in run_parameters.PARAMETERS], return_annotation=Outputs)
    yolo_pipeline.__doc__ = PIPELINE_DOC + "\n\nArgs:\n" + "".join(
        f"    {p.name}: {p.doc}\n" for p in run_parameters.PARAMETERS)
    return yolo_pipeline


yolo_pipeline = make_pipeline()



def compile_pipeline(output: str, options: CompileOptions = DEFAULT_OPTIONS) -> str:
    """Writes the pipeline YAML for ``options.server``: kfp compiles it, ``servers.adapt`` rewrites it to what
    that server parses and applies, and kfp's own writer writes it."""
    func = make_pipeline(options)
    spec, platform = (json_format.MessageToDict(m) for m in (func.pipeline_spec, func.platform_spec))
    servers.adapt(spec, platform, options.target)
    pipeline_spec_builder.write_pipeline_spec_to_file(
        pipeline_spec=json_format.ParseDict(spec, MESSAGES.PipelineSpec()),
        pipeline_description=func.description,
        platform_spec=json_format.ParseDict(platform, MESSAGES.PlatformSpec()), package_path=output)
    return output
