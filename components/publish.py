"""The publish step's KFP component: a thin wrapper around ``yolo_kfp.release.publish``."""

from kfp.dsl import Artifact, Input, Model

from yolo_kfp.components.step_settings import DATA_IMAGE, Resources, component


@component(DATA_IMAGE, timeout_hours=2, data_connection=True, mlflow_connection=True, registry_connection=True,
           resources=Resources(cpu="500m", cpu_limit="1", memory="2Gi"))
def publish(model: Input[Model], onnx_model: Input[Model], metrics_json: Input[Artifact],
            dataset_stats: Input[Artifact], publish_to: str, run_id: str, mlflow_tracking_uri: str,
            registered_model_name: str, model_registry_url: str, publish_oci: str, modelcar_base: str) -> str:
    """Publishes the model under publish_to/<version>/ (weights, ONNX in serving/, args, metrics,
    dataset statistics, parameters, run id), writes manifest.json last, then points publish_to/latest
    at the version.

    With mlflow_tracking_uri set, the model is also registered in MLflow's model registry as a new
    version of registered_model_name, its source the published serving/ folder (the ONNX model in the
    layout OpenVINO Model Server and KServe read), linked to the training's MLflow run.

    With model_registry_url set, the model is also registered in the Kubeflow Model Registry as a new
    version (named by the run id) of registered_model_name: its model artifact's URI is the published
    serving/yolo-kfp folder (s3://, a KServe storage URI), its format onnx and the opset, with the test
    metrics and the run id; authenticated with the pod's service-account token.

    With publish_oci set (a repository, e.g. quay.io/team/yolo-kfp-model), the ONNX model is also pushed
    there as an OCI image (a KServe ModelCar: /models/1/model.onnx on modelcar_base, named by digest), tagged
    with the version and, if it is the newest, latest, with the credentials of the registry Secret
    (REGISTRY_AUTH_JSON); its digest is in the manifest (oci), on the MLflow model version (tag oci_image)
    and is the Model Registry artifact's URI (oci://...@sha256:...).

    Where a search chose the training's settings, the manifest records the search (its space, the
    winner's settings and validation scores, the trial count), and the registered versions carry the
    winner's settings as search.<name> tags (MLflow) and custom properties (Model Registry).

    Returns the published version's S3 URL.

    Args:
        model: The train step's model.
        onnx_model: The export step's ONNX model.
        metrics_json: The evaluate step's metrics.json.
        dataset_stats: The convert step's stats.json.
        run_id: The KFP run's id, recorded in the manifest.
        modelcar_base: The image the ModelCar is built on, by digest (compile option --modelcar-base).
    """
    import logging

    from yolo_kfp.model import tracking
    from yolo_kfp.model.search_report import search_tags
    from yolo_kfp.release.publish import publish_model
    from yolo_kfp.release.registry import serving_location

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    published = publish_model(publish_to=publish_to, model_dir=model.path, metrics_path=metrics_json.path,
                              stats_path=dataset_stats.path, run_id=run_id, onnx_dir=onnx_model.path,
                              publish_oci=publish_oci, modelcar_base=modelcar_base)
    url = published["url"]
    search = published["manifest"].get("search")
    search_settings = search["winner"]["settings"] if search else {}
    image_uri = published["manifest"]["oci"]["uri"] if publish_oci else ""
    if mlflow_tracking_uri:
        tracking.register_model(tracking_uri=mlflow_tracking_uri, run_id=model.metadata["mlflow_run_id"],
                                name=registered_model_name, source=serving_location(url, onnx_model.path)["uri"],
                                tags={tracking.RUN_ID_TAG: run_id, "format": "onnx", **search_tags(search_settings),
                                      **({"oci_image": image_uri} if image_uri else {})})
    if model_registry_url:
        from yolo_kfp.release.registry import register_published_model

        register_published_model(registry_url=model_registry_url, name=registered_model_name, version_url=url,
                                 onnx_dir=onnx_model.path, metrics_path=metrics_json.path, run_id=run_id,
                                 search_settings=search_settings, image_uri=image_uri)
    return url
