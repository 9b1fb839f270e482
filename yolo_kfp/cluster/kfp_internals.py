"""The KFP SDK's private API, the one place this project reaches into it (read in kfp ``KFP_VERSION``;
``tests/test_private_apis.py`` fails when another version is installed)."""

import kfp_server_api

KFP_VERSION = "2.17.3"  # pyproject.toml pins it


def installed_version() -> str:
    from importlib.metadata import version

    return version("kfp")


def create_recurring_run_on_latest_version(client, *, name: str, experiment_id: str, pipeline_id: str, cron: str,
                                           params: dict, catch_up: bool) -> kfp_server_api.V2beta1RecurringRun:
    """A recurring run, one run at a time, of the pipeline without a version: a KFP 2.5 server runs the
    pipeline's latest version at each trigger (kubeflow/pipelines#11560).

    The SDK's public ``create_recurring_run`` refuses a pipeline id without a version id, so the request
    goes through the client's generated recurring-run API, which that method itself calls."""
    return client._recurring_run_api.recurring_run_service_create_recurring_run(
        recurring_run=kfp_server_api.V2beta1RecurringRun(
            display_name=name, experiment_id=experiment_id, mode=kfp_server_api.RecurringRunMode.ENABLE,
            pipeline_version_reference=kfp_server_api.V2beta1PipelineVersionReference(pipeline_id=pipeline_id),
            runtime_config=kfp_server_api.V2beta1RuntimeConfig(parameters=params), no_catchup=not catch_up,
            trigger=kfp_server_api.V2beta1Trigger(cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)),
            max_concurrency=1))
