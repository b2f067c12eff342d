"""The rendered overlays keep the promises deploy/README.md makes; each test runs on dev and on prod.

Availability (a PDB and a memory limit per workload, probes that mean what they
say), graceful shutdown arithmetic, SSE-ready ingress, the NATS cluster's
shape, and references that resolve inside the overlay.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.manifests import (
    Manifests,
    NatsConfig,
    containers,
    labels_match,
    only_container,
    pod_spec,
    probes,
    quantity,
)
from userstream.policy import load_policy

GRPC_SERVICES = {"activity": 50051, "acl": 50052}
EDGE_PORT = 8000
NATS_REPLICAS = 3
SSE_TIMEOUT_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/proxy-read-timeout",
    "nginx.ingress.kubernetes.io/proxy-send-timeout",
)


def _prestop_sleep(container: dict[str, Any]) -> int:
    seconds: int = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    return seconds


def _nats(manifests: Manifests) -> tuple[dict[str, Any], NatsConfig, dict[str, str]]:
    statefulset = manifests.get("StatefulSet", "nats")
    env = {**manifests.environment(only_container(statefulset)), "POD_NAME": "nats-0"}
    volume = next(v for v in pod_spec(statefulset)["volumes"] if v["name"] == "config")
    text = manifests.get("ConfigMap", volume["configMap"]["name"])["data"]["nats.conf"]
    return statefulset, NatsConfig.parse(text, env), env


# --- availability -----------------------------------------------------------------


def test_every_workload_has_a_disruption_budget(manifests: Manifests) -> None:
    budgets = manifests.of_kind("PodDisruptionBudget")
    for workload in manifests.workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if labels_match(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, workload["metadata"]["name"]
        # Budgets that allow one disruption never block a node drain, whatever the replica count.
        assert matching[0]["spec"].get("maxUnavailable") == 1


def test_every_container_has_requests_and_a_memory_limit(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            limit = quantity(resources["limits"]["memory"])
            assert limit >= quantity(resources["requests"]["memory"]), container["name"]


def test_grpc_services_are_probed_natively_on_numeric_ports(manifests: Manifests) -> None:
    for name, port in GRPC_SERVICES.items():
        container = only_container(manifests.get("Deployment", name))
        assert container["args"] == [name, "--host", "0.0.0.0", "--port", str(port)]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        # Ready = grpc.health.v1 says SERVING (only while NATS is reachable).
        assert container["readinessProbe"]["grpc"] == {"port": port}
        for _kind, probe in probes(container):
            handler = probe.get("grpc") or probe.get("tcpSocket")
            assert handler is not None
            assert isinstance(handler["port"], int)
            assert handler["port"] == port
    # Anywhere a gRPC probe appears, its port is a number (the API has no named gRPC ports).
    for workload in manifests.workloads():
        for container in containers(workload):
            for _kind, probe in probes(container):
                if "grpc" in probe:
                    assert isinstance(probe["grpc"]["port"], int)


def test_liveness_never_depends_on_dependencies(manifests: Manifests) -> None:
    """A NATS or acl outage takes pods out of rotation; it must not restart them all."""
    for name in GRPC_SERVICES:
        container = only_container(manifests.get("Deployment", name))
        assert "tcpSocket" in container["livenessProbe"]
    edge = only_container(manifests.get("Deployment", "edge"))
    assert edge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert edge["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert edge["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_rollouts_never_reduce_capacity(manifests: Manifests) -> None:
    for workload in manifests.of_kind("Deployment"):
        strategy = workload["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert strategy["rollingUpdate"]["maxSurge"] >= 1


# --- graceful shutdown -------------------------------------------------------------


def test_edge_drains_streams_before_it_can_be_killed(manifests: Manifests) -> None:
    edge = manifests.get("Deployment", "edge")
    container = only_container(edge)
    drain = float(manifests.environment(container)["USERSTREAM_DRAIN_TIMEOUT"])
    grace = pod_spec(edge)["terminationGracePeriodSeconds"]
    # preStop keeps serving while endpoints and the ingress forget the pod; then
    # SIGTERM, and every stream gets `close` (shutdown) within the drain timeout.
    assert _prestop_sleep(container) >= 1
    assert _prestop_sleep(container) + drain < grace
    # Drains are spaced so that each reconnect wave lands on ready edges.
    assert edge["spec"]["minReadySeconds"] > 0


def test_grpc_services_finish_calls_before_they_can_be_killed(manifests: Manifests) -> None:
    for name in GRPC_SERVICES:
        deployment = manifests.get("Deployment", name)
        container = only_container(deployment)
        grace_period = float(manifests.environment(container)["USERSTREAM_SHUTDOWN_GRACE"])
        assert _prestop_sleep(container) + grace_period < pod_spec(deployment)["terminationGracePeriodSeconds"]


def test_edge_replicas_belong_to_the_autoscaler(manifests: Manifests) -> None:
    edge = manifests.get("Deployment", "edge")
    # A replica count here would be reset by every apply, fighting the autoscaler.
    assert "replicas" not in edge["spec"]
    hpa = manifests.get("HorizontalPodAutoscaler", "edge")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "edge"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # Scaling down reconnects streams: one pod at a time, after a long window.
    scale_down = hpa["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300
    assert all(policy["value"] == 1 for policy in scale_down["policies"] if policy["type"] == "Pods")


# --- the edge's HTTP path ----------------------------------------------------------


def test_ingress_streams_server_sent_events(manifests: Manifests) -> None:
    (ingress,) = manifests.of_kind("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    ping = float(manifests.environment(only_container(manifests.get("Deployment", "edge")))["USERSTREAM_PING_INTERVAL"])
    for key in SSE_TIMEOUT_ANNOTATIONS:
        # Long-lived responses, and never idle for longer than the timeout between pings.
        assert int(annotations[key]) >= 3600
        assert int(annotations[key]) > 2 * ping


def test_ingress_routes_the_streams_and_nothing_internal(manifests: Manifests) -> None:
    (ingress,) = manifests.of_kind("Ingress")
    service = manifests.get("Service", "edge")
    (service_port,) = service["spec"]["ports"]
    paths = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "edge"
            assert backend["port"] == {"name": service_port["name"]}
            paths.append(path["path"])
    assert {"/me/stream", "/public/stream"} <= set(paths)
    for internal in ("/metrics", "/healthz", "/readyz", "/"):
        assert internal not in paths
    edge = only_container(manifests.get("Deployment", "edge"))
    assert edge["args"][:5] == ["edge", "--host", "0.0.0.0", "--port", str(EDGE_PORT)]
    assert service_port["targetPort"] in {p["name"] for p in edge["ports"]}
    assert {"name": "http", "containerPort": EDGE_PORT} in edge["ports"]


def test_prod_ingress_terminates_tls_for_its_hosts(manifests: Manifests, overlay: str) -> None:
    (ingress,) = manifests.of_kind("Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    if overlay == "prod":
        covered = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
        assert hosts <= covered
        assert all(tls["secretName"] for tls in ingress["spec"]["tls"])


# --- services and configuration ----------------------------------------------------


def test_grpc_services_are_headless_for_client_side_balancing(manifests: Manifests) -> None:
    for name, port in GRPC_SERVICES.items():
        service = manifests.get("Service", name)
        assert service["spec"]["clusterIP"] == "None"
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        # Only ready pods resolve, and connections age out so clients re-resolve.
        assert not service["spec"].get("publishNotReadyAddresses", False)
        env = manifests.environment(only_container(manifests.get("Deployment", name)))
        assert float(env["USERSTREAM_GRPC_MAX_CONNECTION_AGE"]) > 0


def test_services_reach_each_other_by_the_configured_addresses(manifests: Manifests) -> None:
    nats_service = manifests.get("Service", "nats")
    for name in (*GRPC_SERVICES, "edge"):
        env = manifests.environment(only_container(manifests.get("Deployment", name)))
        assert env["USERSTREAM_ACTIVITY_ADDR"] == f"activity:{GRPC_SERVICES['activity']}"
        assert env["USERSTREAM_ACL_ADDR"] == f"acl:{GRPC_SERVICES['acl']}"
        # As its own NATS user (nats/auth.conf), the password from the Secret through $(NATS_PASSWORD).
        port = nats_service["spec"]["ports"][0]["port"]
        assert env["USERSTREAM_NATS_URL"] == f"nats://{name}:$(NATS_PASSWORD)@nats:{port}"


def test_internal_secrets_come_from_secrets(manifests: Manifests, overlay: str) -> None:
    """Each service's NATS password and the gRPC token are Secret references, created by the operator in prod."""
    for name in (*GRPC_SERVICES, "edge"):
        entries = {e["name"]: e for e in only_container(manifests.get("Deployment", name))["env"]}
        password = entries["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        token = entries["USERSTREAM_GRPC_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert password["key"] == name
        # $(NATS_PASSWORD) is only expanded when the variable is defined before the URL.
        names = list(entries)
        assert names.index("NATS_PASSWORD") < names.index("USERSTREAM_NATS_URL")
        for reference in (password, token):
            secret = manifests.find("Secret", reference["name"])
            if overlay == "prod":
                assert secret is None
            else:
                assert secret is not None
                assert reference["key"] in secret["data"]


def test_network_policies_admit_only_the_documented_callers(manifests: Manifests) -> None:
    policies = {policy["metadata"]["name"]: policy["spec"] for policy in manifests.of_kind("NetworkPolicy")}
    deny = policies["userstream-default-deny"]
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    for workload in manifests.workloads():
        assert labels_match(deny["podSelector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"])
    (acl_rule,) = policies["acl-from-edge"]["ingress"]
    assert acl_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "edge"}}}]
    assert acl_rule["ports"] == [{"port": GRPC_SERVICES["acl"], "protocol": "TCP"}]
    nats_clients = policies["nats-from-services"]["ingress"][0]
    (expression,) = nats_clients["from"][0]["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == {"activity", "acl", "edge", "relay"}
    assert policies["edge-ingress"]["ingress"] == [{"ports": [{"port": EDGE_PORT, "protocol": "TCP"}]}]


def test_every_service_selects_pods_and_ports_that_exist(manifests: Manifests) -> None:
    for service in manifests.of_kind("Service"):
        pods = [
            w
            for w in manifests.workloads()
            if labels_match(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in containers(pods[0]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_policy_and_settings_come_from_config_maps_that_exist(manifests: Manifests) -> None:
    for name in (*GRPC_SERVICES, "edge"):
        deployment = manifests.get("Deployment", name)
        container = only_container(deployment)
        env = manifests.environment(container)  # also asserts every envFrom ConfigMap exists
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if env["USERSTREAM_POLICY"].startswith(m["mountPath"] + "/")]
        policy_map = manifests.get("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
        assert env["USERSTREAM_POLICY"].rsplit("/", 1)[1] in policy_map["data"]


def test_the_policy_file_loads_with_the_services_loader() -> None:
    from tests.deploy.conftest import DEPLOY

    policy = load_policy(DEPLOY / "k8s" / "base" / "config" / "policy.toml")
    assert policy.organization_roles


def test_jwt_secret_comes_from_a_secret(manifests: Manifests, overlay: str) -> None:
    edge = only_container(manifests.get("Deployment", "edge"))
    (entry,) = [e for e in edge["env"] if e["name"] == "USERSTREAM_JWT_SECRET"]
    reference = entry["valueFrom"]["secretKeyRef"]
    secret = manifests.find("Secret", reference["name"])
    if overlay == "prod":
        # Production's key is created by the operator (deploy/README.md), never committed.
        assert secret is None
        assert reference["name"] == "userstream-jwt"
    else:
        assert secret is not None
        assert reference["key"] in secret["data"]
    for name in GRPC_SERVICES:
        assert "USERSTREAM_JWT_SECRET" not in str(manifests.get("Deployment", name))


def test_images_are_pinned_and_shared(manifests: Manifests) -> None:
    images = {}
    for workload in manifests.workloads():
        for container in containers(workload):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name, image
            assert tag not in {"", "latest"}, image
            images[workload["metadata"]["name"]] = image
    assert images["activity"] == images["acl"] == images["edge"] == images["relay"]


def test_pods_meet_the_restricted_pod_security_standard(manifests: Manifests) -> None:
    (namespace,) = manifests.of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in manifests.workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


# --- NATS ----------------------------------------------------------------------------


def test_nats_is_a_three_node_cluster_routed_over_its_headless_service(manifests: Manifests) -> None:
    statefulset, config, _env = _nats(manifests)
    assert statefulset["spec"]["replicas"] == NATS_REPLICAS
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    headless_name = statefulset["spec"]["serviceName"]
    headless = manifests.get("Service", headless_name)
    assert headless["spec"]["clusterIP"] == "None"
    # Routes must resolve before the nodes are ready, or the cluster never forms.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    cluster_port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "cluster")
    expected = [f"nats://nats-{i}.{headless_name}:{cluster_port}" for i in range(NATS_REPLICAS)]
    assert list(config.routes) == expected
    ports = {p["name"]: p["containerPort"] for p in only_container(statefulset)["ports"]}
    assert ports == {"nats": int(config.values["port"]), "cluster": cluster_port, "monitor": 8222}
    assert config.values["server_name"] == "nats-0"  # $POD_NAME: unique per node, as JetStream needs


def test_nats_enters_lame_duck_mode_and_has_time_to_finish(manifests: Manifests) -> None:
    statefulset, config, _env = _nats(manifests)
    container = only_container(statefulset)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["nats-server", f"-sl=ldm={config.values['pid_file']}"]
    pid_dir = config.values["pid_file"].rsplit("/", 1)[0]
    assert any(m["mountPath"] == pid_dir for m in container["volumeMounts"])
    lame_duck = config.seconds("lame_duck_grace_period") + config.seconds("lame_duck_duration")
    assert lame_duck < pod_spec(statefulset)["terminationGracePeriodSeconds"]


def test_nats_probes_use_the_monitoring_port_like_the_official_chart(manifests: Manifests) -> None:
    statefulset, config, _env = _nats(manifests)
    container = only_container(statefulset)
    monitor = next(p for p in container["ports"] if p["name"] == "monitor")
    assert monitor["containerPort"] == int(config.values["http_port"])
    paths = {kind: probe["httpGet"]["path"] for kind, probe in probes(container)}
    assert paths == {
        "startupProbe": "/healthz",
        "readinessProbe": "/healthz?js-server-only=true",
        "livenessProbe": "/healthz?js-enabled-only=true",
    }
    for _kind, probe in probes(container):
        assert probe["httpGet"]["port"] == "monitor"


def test_nats_jetstream_lives_on_a_volume_larger_than_its_limit(manifests: Manifests) -> None:
    statefulset, config, _env = _nats(manifests)
    container = only_container(statefulset)
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert mount["mountPath"] == config.values["store_dir"]
    assert quantity(config.values["max_file_store"]) < quantity(claim["spec"]["resources"]["requests"]["storage"])
    # Memory: the Go runtime's soft limit below the container's hard one, and
    # the JetStream memory store inside both.
    env = manifests.environment(container)
    limit = quantity(container["resources"]["limits"]["memory"])
    assert quantity(config.values["max_memory_store"]) < quantity(env["GOMEMLIMIT"]) < limit


def test_stream_and_bucket_replicas_fit_the_cluster(manifests: Manifests, overlay: str) -> None:
    for name in (*GRPC_SERVICES, "edge"):
        env = manifests.environment(only_container(manifests.get("Deployment", name)))
        replicas = int(env["USERSTREAM_STREAM_REPLICAS"])
        assert 1 <= replicas <= NATS_REPLICAS
        if overlay == "prod":
            assert replicas == NATS_REPLICAS


def test_prod_spreads_nats_nodes_over_machines(manifests: Manifests, overlay: str) -> None:
    affinity = pod_spec(manifests.get("StatefulSet", "nats"))["affinity"]["podAntiAffinity"]
    if overlay == "prod":
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert "preferredDuringSchedulingIgnoredDuringExecution" not in affinity
    else:
        assert "preferredDuringSchedulingIgnoredDuringExecution" in affinity


def test_ingress_never_logs_stream_tokens(manifests: Manifests) -> None:
    """EventSource sends its token in the query string; ingress-nginx's access log would keep it."""
    annotations = manifests.get("Ingress", "edge")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/enable-access-log"] == "false"


# --- the outbox relay ------------------------------------------------------------------


def test_two_relays_probed_on_their_http_port_with_the_dsn_from_a_secret(manifests: Manifests, overlay: str) -> None:
    relay = manifests.get("Deployment", "relay")
    # One records, the other stands by (docs/outbox.md): the overlays keep two.
    assert relay["spec"]["replicas"] == 2
    container = only_container(relay)
    assert container["args"] == ["relay", "--host", "0.0.0.0", "--port", "8001"]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8001)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # A PostgreSQL or NATS outage takes the relay out of readiness; it never restarts it.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    (init,) = pod_spec(relay)["initContainers"]
    assert init["args"] == ["outbox", "install"]
    assert init["image"] == container["image"]
    references = []
    for each in (container, init):
        (entry,) = [e for e in each["env"] if e["name"] == "USERSTREAM_OUTBOX_DSN"]
        references.append(entry["valueFrom"]["secretKeyRef"])
    reference = references[0]
    assert references == [reference, reference]
    assert reference["key"] == "dsn"
    secret = manifests.find("Secret", reference["name"])
    if overlay == "prod":
        assert reference["name"] == "userstream-outbox"
        assert secret is None  # the application's database: created by the operator, never committed
    else:
        assert secret is not None
        assert "dsn" in secret["data"]
    env = manifests.environment(container)
    assert env["USERSTREAM_NATS_URL"] == "nats://relay:$(NATS_PASSWORD)@nats:4222"
