"""Least privilege in what manifests/ ships: every pod spec passes Pod Security "restricted", every Role
names the objects it grants where Kubernetes can check a name and has no wildcard, the model server is
reachable only from the router, the serving mesh and monitoring, and the model is read with read-only
keys of its own. The checker itself is shown to fail on bad specs (tests/pod_security.py)."""

import copy
import fnmatch
import glob
import json
import os

import pytest
import yaml
from pod_security import rbac_violations, restricted_violations
from test_serving_manifests import ISVC, ROOT, SERVING, kustomize

from yolo_kfp.infra.storage import ENV_KEYS
from yolo_kfp.model.export import SERVING_NAME
from yolo_kfp.pipeline.compile_options import DATA_CONNECTION

SERVING_CONNECTION = "yolo-kfp-serving-s3"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
# Namespaces that may reach the model server: the router (both forms of OpenShift's label), the mesh's
# gateway and Knative's activator (Serverless), and cluster monitoring (its scrape port only).
ALLOWED_SOURCES = [{"network.openshift.io/policy-group": "ingress"},
                   {"policy-group.network.openshift.io/ingress": ""},
                   {"kubernetes.io/metadata.name": "istio-system"},
                   {"kubernetes.io/metadata.name": "knative-serving"},
                   {"network.openshift.io/policy-group": "monitoring"}]


@pytest.fixture(scope="module")
def shipped() -> list[dict]:
    """Every object `oc apply -k` makes from manifests/ and manifests/serving/."""
    return [obj for folder in (os.path.join(ROOT, "manifests"), SERVING) for obj in kustomize(folder).values()]


def pod_specs(obj: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, pod annotations) of each pod the object makes. A ServingRuntime's spec is the
    pod's (it has no pod securityContext); an InferenceService's predictor is a PodSpec whose `model` is
    one more container."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        return [("spec", spec, obj["metadata"].get("annotations", {}))]
    if kind in WORKLOADS:
        template = spec["template"]
        return [("spec.template.spec", template["spec"], template.get("metadata", {}).get("annotations", {}))]
    if kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        return [("spec.jobTemplate.spec.template.spec", template["spec"],
                 template.get("metadata", {}).get("annotations", {}))]
    if kind == "ServingRuntime":
        return [("spec", spec, spec.get("annotations", {}))]
    if kind == "InferenceService":
        predictor = copy.deepcopy(spec["predictor"])
        predictor["containers"] = predictor.get("containers", []) + [predictor.pop("model")]
        return [("spec.predictor", predictor, obj["metadata"].get("annotations", {}))]
    return []


def holds_containers(value) -> bool:
    if isinstance(value, dict):
        return "containers" in value or "model" in value or any(holds_containers(v) for v in value.values())
    return isinstance(value, list) and any(holds_containers(v) for v in value)


def pod_problems(obj: dict) -> list[str]:
    return [f"{obj['kind']}/{obj['metadata']['name']} {problem}" for where, pod, annotations in pod_specs(obj)
            for problem in restricted_violations(pod, annotations, where)]


def test_every_shipped_pod_passes_the_restricted_profile(shipped):
    pods = [obj for obj in shipped if pod_specs(obj)]
    assert {(o["kind"], o["metadata"]["name"]) for o in pods} == {("ServingRuntime", SERVING_NAME), ISVC}
    # an object that makes pods in a way pod_specs does not read (a new kind, a workerSpec) fails here
    unread = [o["kind"] for o in shipped if holds_containers(o.get("spec", {})) and not pod_specs(o)]
    assert unread == []
    assert not any("workerSpec" in o.get("spec", {}) or "workerSpec" in o.get("spec", {}).get("predictor", {})
                   for o in pods)
    assert [p for obj in pods for p in pod_problems(obj)] == []


BAD_PODS = {  # name: (change to the InferenceService's predictor, what the checker must say)
    "privileged": (lambda p: p["model"]["securityContext"].update(privileged=True), "privileged: true"),
    "escalation allowed": (lambda p: p["model"]["securityContext"].pop("allowPrivilegeEscalation"),
                           "allowPrivilegeEscalation: must be false"),
    "capabilities kept": (lambda p: p["model"]["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
                          "capabilities.drop: must include ALL"),
    "capability added": (lambda p: p["model"]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
                         "capabilities.add: ['SYS_ADMIN']"),
    "root user": (lambda p: p["securityContext"].update(runAsUser=0), "securityContext.runAsUser: 0"),
    "root allowed": (lambda p: (p["securityContext"].pop("runAsNonRoot"),
                                p["model"]["securityContext"].pop("runAsNonRoot")), "runAsNonRoot: must be true"),
    "seccomp unset": (lambda p: (p["securityContext"].pop("seccompProfile"),
                                 p["model"]["securityContext"].pop("seccompProfile")), "seccompProfile: must be"),
    "seccomp unconfined": (lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}),
                           "seccompProfile.type: 'Unconfined'"),
    "host network": (lambda p: p.update(hostNetwork=True), "hostNetwork: true"),
    "host PID": (lambda p: p.update(hostPID=True), "hostPID: true"),
    "host IPC": (lambda p: p.update(hostIPC=True), "hostIPC: true"),
    "hostPath volume": (lambda p: p.update(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
                        "volumes[root]: ['hostPath']"),
    "nfs volume": (lambda p: p.update(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
                   "volumes[n]: ['nfs']"),
    "host port": (lambda p: p["model"].update(ports=[{"containerPort": 8888, "hostPort": 8888}]),
                  "hostPort [8888]"),
    "proc mount": (lambda p: p["model"]["securityContext"].update(procMount="Unmasked"), "procMount: 'Unmasked'"),
    "unsafe sysctl": (lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
                      "sysctls: ['kernel.msgmax']"),
    "AppArmor off": (lambda p: p["model"]["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
                     "appArmorProfile.type: 'Unconfined'"),
    "SELinux type": (lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
                     "seLinuxOptions.type: 'spc_t'"),
    "SELinux user": (lambda p: p["securityContext"].update(seLinuxOptions={"user": "system_u"}),
                     "seLinuxOptions.user: 'system_u'"),
    "Windows host process": (lambda p: p["securityContext"].update(windowsOptions={"hostProcess": True}),
                             "windowsOptions.hostProcess: true"),
    "bad init container": (lambda p: p.update(initContainers=[{"name": "init", "image": "busybox"}]),
                           "initContainers[0].securityContext.allowPrivilegeEscalation"),
}


@pytest.mark.parametrize("breakage", sorted(BAD_PODS))
def test_the_checker_refuses_a_bad_pod(shipped, breakage):
    (isvc,) = [copy.deepcopy(o) for o in shipped if (o["kind"], o["metadata"]["name"]) == ISVC]
    change, expected = BAD_PODS[breakage]
    change(isvc["spec"]["predictor"])
    found = pod_problems(isvc)
    assert [p for p in found if expected in p], f"{breakage} went unnoticed: {found}"


def test_the_checker_reads_apparmor_annotations_and_plain_pods():
    pod = {"kind": "Pod", "metadata": {"name": "p", "annotations": {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined"}}, "spec": {"containers": [{"name": "c"}]}}
    found = pod_problems(pod)
    assert any("apparmor" in p and "'unconfined'" in p for p in found), found
    assert any("runAsNonRoot: must be true" in p for p in found), found


def test_roles_name_what_they_grant_without_wildcards(shipped):
    roles = [o for o in shipped if o["kind"] in ("Role", "ClusterRole")]
    assert {o["kind"] for o in roles} == {"Role"}  # nothing cluster-wide
    assert not [o for o in shipped if o["kind"] == "ClusterRoleBinding"]
    assert {o["metadata"]["name"]: rbac_violations(o) for o in roles} == {o["metadata"]["name"]: [] for o in roles}
    assert not [r for o in roles for r in o["rules"] if {"secrets", "pods/exec"} & set(r["resources"])]


def test_the_workbench_reads_no_route_but_the_old_proxys_one():
    """yolo_kfp/cluster/workbench.py finds the server by listing DSPAs; the only Route a token must `get` is the one
    the older pipeline-server proxy (oauth-proxy) checks: ds-pipeline-<DSPA name>."""
    role = kustomize(os.path.join(ROOT, "manifests"))[("Role", "yolo-kfp-pipeline-user")]
    routes = [r for r in role["rules"] if "routes" in r["resources"]]
    assert routes == [{"apiGroups": ["route.openshift.io"], "resources": ["routes"],
                       "resourceNames": ["ds-pipeline-dspa"], "verbs": ["get"]}]
    cluster = "".join(open(path).read() for path in glob.glob(os.path.join(ROOT, "yolo_kfp", "cluster", "*.py")))
    assert "list_namespaced_custom_object(DSPA" in cluster and "route.openshift.io" not in cluster


BAD_RULES = {
    "wildcard verb": ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["*"]},
                      "verbs: a wildcard"),
    "wildcard resource": ({"apiGroups": [""], "resources": ["*"], "verbs": ["list"]}, "resources: a wildcard"),
    "wildcard group": ({"apiGroups": ["*"], "resources": ["routes"], "verbs": ["list"]}, "apiGroups: a wildcard"),
    "get of every route": ({"apiGroups": ["route.openshift.io"], "resources": ["routes"], "verbs": ["get", "list"]},
                           "['get'] on ['routes'] without resourceNames"),
}


@pytest.mark.parametrize("breakage", sorted(BAD_RULES))
def test_the_rbac_check_refuses_a_bad_rule(breakage):
    rule, expected = BAD_RULES[breakage]
    found = rbac_violations({"rules": [rule]})
    assert [p for p in found if expected in p], f"{breakage} went unnoticed: {found}"


def ingress_problems(policy: dict) -> list[str]:
    """Ways the policy lets in more than the router, the mesh and monitoring."""
    spec, found = policy["spec"], []
    if "Ingress" not in spec.get("policyTypes", []):
        found.append("policyTypes: no Ingress")
    for i, rule in enumerate(spec.get("ingress", [])):
        if not rule.get("from"):
            found.append(f"ingress[{i}]: from anywhere")
        for peer in rule.get("from", []):
            if peer != {"namespaceSelector": {"matchLabels": peer.get("namespaceSelector", {}).get("matchLabels")}} \
                    or peer["namespaceSelector"]["matchLabels"] not in ALLOWED_SOURCES:
                found.append(f"ingress[{i}]: from {peer}")
    return found


def test_only_the_router_mesh_and_monitoring_reach_the_model_server(shipped):
    (policy,) = [o for o in shipped if o["kind"] == "NetworkPolicy"]
    (isvc,) = [o for o in shipped if (o["kind"], o["metadata"]["name"]) == ISVC]
    # KServe labels the predictor's pods serving.kserve.io/inferenceservice: <name>
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice":
                                                             isvc["metadata"]["name"]}}
    assert ingress_problems(policy) == []
    monitoring = [r for r in policy["spec"]["ingress"]
                  if {"namespaceSelector": {"matchLabels": ALLOWED_SOURCES[-1]}} in r["from"]]
    assert monitoring == [{"from": [{"namespaceSelector": {"matchLabels": ALLOWED_SOURCES[-1]}}],
                           "ports": [{"protocol": "TCP", "port": 8888}]}]  # OVMS' /metrics port only
    for bad in ({}, {"from": [{"podSelector": {}}]}, {"from": [{"namespaceSelector": {}}]},
                {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}):
        loose = copy.deepcopy(policy)
        loose["spec"]["ingress"].append(bad)
        assert ingress_problems(loose), bad


@pytest.fixture(scope="module")
def serving_connection() -> dict:
    with open(os.path.join(SERVING, "data-connection.yaml")) as f:
        return yaml.safe_load(f)


def test_the_model_is_read_with_its_own_data_connection(shipped, serving_connection):
    (isvc,) = [o for o in shipped if (o["kind"], o["metadata"]["name"]) == ISVC]
    assert isvc["spec"]["predictor"]["model"]["storage"]["key"] == SERVING_CONNECTION != DATA_CONNECTION
    assert serving_connection["metadata"]["name"] == SERVING_CONNECTION
    # what odh-model-controller copies into storage-config, where KServe's storage initializer reads it
    assert {k: serving_connection["metadata"]["labels"].get(k) for k in
            ("opendatahub.io/dashboard", "opendatahub.io/managed")} == {"opendatahub.io/dashboard": "true",
                                                                        "opendatahub.io/managed": "true"}
    assert serving_connection["metadata"]["annotations"]["opendatahub.io/connection-type"] == "s3"
    assert set(serving_connection["stringData"]) == set(ENV_KEYS)
    # applied once with real keys, never by `oc apply -k` (which would put the placeholders back)
    assert not [o for o in shipped if o["kind"] == "Secret" and o["metadata"]["name"] == SERVING_CONNECTION]


def test_the_read_only_policy_reads_the_served_model_and_nothing_else(shipped, serving_connection):
    with open(os.path.join(SERVING, "s3-read-only-policy.json")) as f:
        statements = json.load(f)["Statement"]
    assert {s["Effect"] for s in statements} == {"Allow"}
    assert sorted(a for s in statements for a in s["Action"]) == ["s3:GetObject", "s3:ListBucket"]
    (isvc,) = [o for o in shipped if (o["kind"], o["metadata"]["name"]) == ISVC]
    path = isvc["spec"]["predictor"]["model"]["storage"]["path"]
    bucket = serving_connection["stringData"]["AWS_S3_BUCKET"]
    (get,) = [s for s in statements if s["Action"] == ["s3:GetObject"]]
    (listing,) = [s for s in statements if s["Action"] == ["s3:ListBucket"]]
    # the storage initializer lists storage.path and gets what is under it: 1/model.onnx
    assert all(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{path}/1/model.onnx", r) for r in get["Resource"])
    assert listing["Resource"] == [f"arn:aws:s3:::{bucket}"]
    assert all(fnmatch.fnmatchcase(path + "/", p) for p in listing["Condition"]["StringLike"]["s3:prefix"])
    # and not the rest of the version (the checkpoint, metrics) nor anything outside the prefix
    version = path.rsplit("/serving/", 1)[0]
    for other in (f"{version}/weights/best.pt", "other/key"):
        assert not any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{other}", r) for r in get["Resource"]), other
