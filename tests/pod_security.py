"""Pod Security Standards ("restricted", which includes "baseline"), as a checker of pod specs, and the
RBAC rules the project holds its Roles to.

The rules are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/ (Kubernetes
1.31, OpenShift 4.18); each violation is one line naming the field and the value found.
"""

BASELINE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                    "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}
APPARMOR_ALLOWED = {"RuntimeDefault", "Localhost"}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# Verbs Kubernetes authorizes by object name; list, watch, create and deletecollection it cannot
# (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources).
NAMEABLE_VERBS = {"get", "update", "patch", "delete"}


def _security_context_problems(where: str, context: dict) -> list[str]:
    """The rules that apply alike to a pod's and a container's securityContext."""
    found = []
    if context.get("windowsOptions", {}).get("hostProcess"):
        found.append(f"{where}.windowsOptions.hostProcess: true")
    selinux = context.get("seLinuxOptions", {})
    if selinux.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type: {selinux['type']!r}")
    for field in ("user", "role"):
        if selinux.get(field):
            found.append(f"{where}.seLinuxOptions.{field}: {selinux[field]!r}")
    apparmor = context.get("appArmorProfile", {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_ALLOWED:
        found.append(f"{where}.appArmorProfile.type: {apparmor!r}")
    seccomp = context.get("seccompProfile", {}).get("type")
    if seccomp is not None and seccomp not in SECCOMP_ALLOWED:
        found.append(f"{where}.seccompProfile.type: {seccomp!r}")
    if context.get("runAsUser") == 0:
        found.append(f"{where}.runAsUser: 0")
    if context.get("runAsNonRoot") is False:
        found.append(f"{where}.runAsNonRoot: false")
    return found


def _container_problems(where: str, container: dict, pod_context: dict) -> list[str]:
    context = container.get("securityContext", {})
    found = _security_context_problems(f"{where}.securityContext", context)
    if context.get("privileged"):
        found.append(f"{where}.securityContext.privileged: true")
    if context.get("procMount", "Default") != "Default":
        found.append(f"{where}.securityContext.procMount: {context['procMount']!r}")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}.securityContext.allowPrivilegeEscalation: must be false")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        found.append(f"{where}.securityContext.capabilities.drop: must include ALL")
    added = set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}
    if added:
        found.append(f"{where}.securityContext.capabilities.add: {sorted(added)} (only NET_BIND_SERVICE)")
    if context.get("runAsNonRoot") is None and pod_context.get("runAsNonRoot") is not True:
        found.append(f"{where}.securityContext.runAsNonRoot: must be true (here or for the pod)")
    if context.get("seccompProfile", {}).get("type") is None and pod_context.get("seccompProfile") is None:
        found.append(f"{where}.securityContext.seccompProfile: must be RuntimeDefault or Localhost (here or for "
                     "the pod)")
    ports = [p["hostPort"] for p in container.get("ports", []) if p.get("hostPort")]
    if ports:
        found.append(f"{where}.ports: hostPort {ports}")
    return found


def restricted_violations(pod: dict, annotations: dict | None = None, where: str = "spec") -> list[str]:
    """What keeps ``pod`` (a PodSpec, or an object with its fields) from the "restricted" profile."""
    context = pod.get("securityContext", {})
    found = _security_context_problems(f"{where}.securityContext", context)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{where}.{field}: true")
    unsafe = [s["name"] for s in context.get("sysctls", []) if s["name"] not in BASELINE_SYSCTLS]
    if unsafe:
        found.append(f"{where}.securityContext.sysctls: {unsafe}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"{where}.volumes[{volume['name']}]: {sorted(kinds - RESTRICTED_VOLUMES)}")
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"metadata.annotations[{key}]: {value!r}")
    for field in CONTAINER_LISTS:
        for i, container in enumerate(pod.get(field, [])):
            found += _container_problems(f"{where}.{field}[{i}]", container, context)
    return found


def rbac_violations(role: dict) -> list[str]:
    """Wildcards, and rules granting a verb Kubernetes could limit to named objects without naming them."""
    found = []
    for i, rule in enumerate(role.get("rules", [])):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            if any("*" in value for value in rule.get(field, [])):
                found.append(f"rules[{i}].{field}: a wildcard in {rule[field]}")
        unnamed = sorted(NAMEABLE_VERBS & set(rule.get("verbs", [])))
        if unnamed and not rule.get("resourceNames"):
            found.append(f"rules[{i}]: {unnamed} on {rule.get('resources')} without resourceNames")
    return found
