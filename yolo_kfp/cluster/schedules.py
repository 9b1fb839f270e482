"""Recurring runs of the pipeline on a Data Science Pipelines server: the cron and the name checked before
the server is asked, then create, list, enable, disable or delete."""

import logging
import re

from yolo_kfp.cluster.client import DEFAULT_EXPERIMENT, Server, answered, own_links
from yolo_kfp.cluster.kfp_internals import create_recurring_run_on_latest_version
from yolo_kfp.params.run_values import convert_params
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.pipeline import PIPELINE_NAME

log = logging.getLogger(__name__)


# KFP's scheduler understands these too; written out, the six-field form says exactly when they fire.
PREDEFINED_SCHEDULES = {"@hourly": "0 0 * * * *", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                        "@weekly": "0 0 0 * * 0", "@monthly": "0 0 0 1 * *", "@yearly": "0 0 0 1 1 *",
                        "@annually": "0 0 0 1 1 *"}
TIME_ZONE = "UTC"  # the time zone of the scheduled-workflow controller of Data Science Pipelines
DEFAULT_TARGET = servers.server_target()  # frozen: one instance serves every call


# KFP's scheduler parses cron with robfig/cron: each field a list of N, a-b, */n, a/n or a-b/n, where * or ?
# is the whole range; months and days of the week also by their English abbreviations, in any case.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS = (("second", 0, 59, {}), ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
               ("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTHS)}),
               ("day-of-week", 0, 6, {name: i for i, name in enumerate(WEEKDAYS)}))


def cron_field_values(text: str, field: tuple) -> set[int]:
    """The values one cron field fires at; a ValueError saying what is wrong with it."""
    name, low, high, names = field
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if span in ("*", "?"):
            start, end = low, high
        else:
            first, dash, last = span.partition("-")
            start = names.get(first.lower(), int(first) if first.isdigit() else None)
            end = names.get(last.lower(), int(last) if last.isdigit() else None) if dash else (
                high if slash else start)
            if start is None or end is None:
                raise ValueError(f"{part!r} is not a number{', a name' if names else ''} or a range")
            if start > end:
                raise ValueError(f"{part!r} runs backwards")
            if start < low or end > high:
                raise ValueError(f"{part!r} is outside {low}-{high}")
        if slash and not (step.isdigit() and int(step) > 0):
            raise ValueError(f"{part!r} has step {step!r}, not a positive whole number")
        values.update(range(start, end + 1, int(step) if slash else 1))
    return values


def six_field_cron(expression: str) -> str:
    """KFP's cron has six fields, seconds first; a five-field expression would silently mean another time,
    a value outside a field's range is named here before the server is asked (its API answers with
    robfig/cron's error), and a seconds field with more than one value would start several runs a minute."""
    expression = PREDEFINED_SCHEDULES.get(expression.strip().lower(), expression)
    fields = expression.split()
    if len(fields) == 5:
        raise ValueError(f"cron {expression!r} has five fields, but KFP's cron has six, seconds first: sent as it "
                         f"is, it would run at other times than it says. The same schedule in KFP's form: "
                         f"'0 {' '.join(fields)}'")
    if len(fields) != 6:
        raise ValueError(f"cron {expression!r} must have six fields: second minute hour day-of-month month "
                         "day-of-week, e.g. '0 0 3 * * 1' for Mondays at 03:00 UTC, or one of "
                         f"{', '.join(PREDEFINED_SCHEDULES)}")
    fired = []
    for text, field in zip(fields, CRON_FIELDS, strict=True):
        name, low, high, names = field
        try:
            fired.append(cron_field_values(text, field))
        except ValueError as error:
            named = f" or {list(names)[0].upper()}-{list(names)[-1].upper()}" if names else ""
            raise ValueError(f"cron {expression!r}: its {name} field {error}: use {low}-{high}{named}, "
                             "a range a-b, a list a,b, a step */n, or *") from None
    if len(fired[0]) > 1:
        raise ValueError(f"cron {expression!r} fires more than once a minute (its first field, {fields[0]!r}, is "
                         "the second): each firing starts a training run. Use one second, e.g. "
                         f"'0 {' '.join(fields[1:])}'")
    return " ".join(fields)


def check_schedule_name(name: str) -> None:
    """A recurring run's name as KFP takes it: not empty (the API refuses it), and one whose Kubernetes form
    (lower case, letters, digits and '-' kept: KFP's toSWFCRDResourceGeneratedName) does not start with '-',
    which the ScheduledWorkflow it names could not have. Surrounding spaces would make --delete NAME miss it."""
    if not name.strip() or name != name.strip() or not name.isprintable():
        raise ValueError(f"--name {name!r} is not a recurring run's name: give a name without surrounding spaces or "
                         "control characters, e.g. yolo-kfp-retraining")
    if re.sub(r"[^a-z0-9-]", "", name.lower()).startswith("-"):
        raise ValueError(f"--name {name!r} would name a Kubernetes ScheduledWorkflow starting with '-', which "
                         "Kubernetes refuses: start the name with a letter or digit")


def latest_version(client, pipeline_id: str) -> str:
    versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1).pipeline_versions
    if not versions:
        raise ValueError(f"pipeline {PIPELINE_NAME} has no version: run yolo-kfp upload first")
    return versions[0].pipeline_version_id


def schedule(server: Server, cron: str, name: str, params: dict, experiment: str = DEFAULT_EXPERIMENT,
             catch_up: bool = False, target: servers.ServerTarget = DEFAULT_TARGET) -> tuple[str, str]:
    """A recurring run of the pipeline, one run at a time; returns its id and which version it runs.

    From KFP 2.5 (kubeflow/pipelines#11560) a recurring run given the pipeline but no version runs the
    pipeline's latest version at each trigger, so a later ``upload`` is picked up; older servers need a
    version, and the schedule stays on the one that is latest now."""
    cron, params = six_field_cron(cron), convert_params(params)
    check_schedule_name(name)
    servers.check_run_parameters(params, target)
    client = server.client()
    if any(s["name"] == name for s in list_schedules(server)):
        raise ValueError(f"a recurring run named {name!r} exists: pick another --name, or --delete {name} first")
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        raise ValueError(f"no pipeline named {PIPELINE_NAME} on {server.host}: run yolo-kfp upload first")
    version_id = latest_version(client, pipeline_id)
    with own_links():
        experiment_id = answered(client.create_experiment(experiment).experiment_id, "the experiment's id")
        if servers.follows_latest_version(target):
            recurring = create_recurring_run_on_latest_version(client, name=name, experiment_id=experiment_id,
                                                               pipeline_id=pipeline_id, cron=cron, params=params,
                                                               catch_up=catch_up)
            version = "the latest version at each run"
        else:
            log.warning("%s cannot follow the latest version (KFP 2.5 can): this schedule stays on version %s; "
                        "schedule again after the next upload", target.name, version_id)
            recurring = client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, cron_expression=cron, max_concurrency=1,
                no_catchup=not catch_up, params=params, pipeline_id=pipeline_id, version_id=version_id)
            version = f"version {version_id}"
    recurring_run_id = answered(recurring.recurring_run_id, "the recurring run's id")
    log.info("scheduled %s (%s) at cron %r %s", name, recurring_run_id, cron, TIME_ZONE)
    return recurring_run_id, version


def list_schedules(server: Server) -> list[dict]:
    runs = server.client().list_recurring_runs(page_size=100).recurring_runs or []
    return [{"name": r.display_name, "id": r.recurring_run_id, "status": r.status,
             "cron": r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None} for r in runs]


SCHEDULE_ACTIONS = {"enable": "enable_recurring_run", "disable": "disable_recurring_run",
                    "delete": "delete_recurring_run"}


def change_schedule(server: Server, name: str, action: str) -> str:
    """Enables, disables or deletes the recurring run named ``name``; returns its id."""
    matches = [s for s in list_schedules(server) if s["name"] == name]
    if not matches:
        raise ValueError(f"no recurring run named {name!r}; yolo-kfp schedule --list shows them")
    client = server.client()
    for match in matches:
        getattr(client, SCHEDULE_ACTIONS[action])(match["id"])
    return ", ".join(m["id"] for m in matches)
