"""The Kubernetes manifests (deploy/kubernetes/), checked without a cluster.

Every kustomization renders with the kubectl on PATH; the built-in objects validate against
Kubernetes 1.30's schemas in strict mode (kubernetes-validate, offline) and the custom
resources (KEDA, CloudNativePG, Prometheus Operator) against their CRDs' published schemas,
vendored under tests/deploy/crd_schemas/ (each file names its source and tag) and made
strict here the way the API server's strict field validation is. Then the policies over the
rendered objects, the Settings ↔ ConfigMap/Secret keys, and the PrometheusRule against
monitoring/prometheus/rules/.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from moked.settings import Settings
from scripts import k8s_prometheus_rule

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
KUSTOMIZATIONS = ("base", "overlays/production", "overlays/gpu")
OVERLAYS = ("overlays/production", "overlays/gpu")
CRD_SCHEMAS = Path(__file__).with_name("crd_schemas")
K8S_VERSION = "1.30.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
ONE_SHOT = ("Job", "CronJob")
MOKED_IMAGES = (
    "moked/webhooks",
    "moked/crm-ui",
    "moked/transcriber",
    "moked/transcriber-gpu",  # services/transcriber/Dockerfile --target gpu
    "moked/nginx",
)

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed (it renders kustomize)"
)


@functools.cache
def rendered(kustomization: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of one directory: plain `kubectl apply -k` must accept the same."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(kustomization: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(kustomization) if doc["kind"] == kind]


def one(kustomization: str, kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in objects(kustomization, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {kustomization}: {len(found)}"
    return found[0]


def is_builtin(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(doc)["spec"]
    return spec


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = pod_template(doc)["metadata"]["labels"]
    return labels


def workloads(kustomization: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(kustomization) if doc["kind"] in WORKLOADS]


def containers(doc: dict[str, Any], *, init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    yield from spec["containers"]
    if init:
        yield from spec.get("initContainers", [])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only: the manifests use no expressions) on labels."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# --- rendering and schemas ----------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_kustomization_renders_into_the_moked_namespace(kustomization: str) -> None:
    docs = rendered(kustomization)
    assert {doc["kind"] for doc in docs} >= {"Namespace", "ConfigMap", "StatefulSet", "Job"}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "moked", name_of(doc)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_builtin_objects_validate_strictly_against_kubernetes_1_30(kustomization: str) -> None:
    builtin = [doc for doc in rendered(kustomization) if is_builtin(doc)]
    assert len(builtin) > 30
    for doc in builtin:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validation can fail: a probe field typo in a rendered Deployment is refused."""
    deployment = json.loads(json.dumps(one("base", "Deployment", "crm-ui")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """Unknown fields refused, as the API server's strict field validation does, except where
    the CRD keeps them (x-kubernetes-preserve-unknown-fields) or declares a map."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        vendored = json.loads(path.read_text(encoding="utf-8"))
        schema = _strict(vendored["schema"])
        validators[(vendored["apiVersion"], vendored["kind"])] = jsonschema.Draft7Validator(schema)
    return validators


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_custom_resources_validate_against_their_crd_schemas(kustomization: str) -> None:
    custom = [doc for doc in rendered(kustomization) if not is_builtin(doc)]
    assert custom
    for doc in custom:
        validator = crd_validators().get((doc["apiVersion"], doc["kind"]))
        assert validator is not None, f"no vendored CRD schema for {doc['apiVersion']} {doc}"
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, (name_of(doc), errors)


def test_crd_validation_catches_an_unknown_field() -> None:
    scaled = json.loads(json.dumps(one("base", "ScaledObject", "transcriber")))
    scaled["spec"]["minReplicas"] = 1  # KEDA's is minReplicaCount
    validator = crd_validators()[("keda.sh/v1alpha1", "ScaledObject")]
    assert list(validator.iter_errors(scaled))


# --- policies -----------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_is_pinned_sized_probed_and_unprivileged(kustomization: str) -> None:
    for doc in workloads(kustomization):
        spec = pod_spec(doc)
        where = name_of(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in containers(doc):
            what = f"{where} {container['name']}"
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag and tag not in ("", "latest"), what
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), what
            assert "memory" in resources["limits"], what
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, what
            assert security["readOnlyRootFilesystem"] is True, what
            assert security["capabilities"]["drop"] == ["ALL"], what
            assert security.get("runAsNonRoot", True) is not False, what
            assert security.get("runAsUser", 1) != 0, what
        if doc["kind"] not in ONE_SHOT:
            for container in containers(doc, init=False):
                what = f"{where} {container['name']}"
                assert "readinessProbe" in container and "livenessProbe" in container, what


def _images_compose_builds() -> dict[str, tuple[Path, str | None]]:
    """moked/NAME → (its Dockerfile, the build target or None) for compose's built images."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    built: dict[str, tuple[Path, str | None]] = {}
    for service in compose["services"].values():
        if "build" in service:
            build = service["build"]
            where = (REPO / build["context"] / build["dockerfile"], build.get("target"))
            assert built.setdefault(service["image"].split(":")[0], where) == where
    return built


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_moked_images_are_those_compose_builds(kustomization: str) -> None:
    built = _images_compose_builds()
    assert set(built) == set(MOKED_IMAGES)
    for dockerfile, target in built.values():
        stages = re.findall(r"^FROM \S+ AS (\S+)", dockerfile.read_text(), re.MULTILINE)
        assert target is None or target in stages, (dockerfile, target)
    named = {
        container["image"].rsplit(":", 1)[0]
        for doc in workloads(kustomization)
        for container in containers(doc)
        if container["image"].startswith("moked/")
    }
    assert named and named <= set(built), sorted(named - set(built))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_apps_wait_for_the_migrations_of_their_own_image(kustomization: str) -> None:
    job = one(kustomization, "Job", "moked-migrate")
    assert pod_spec(job)["containers"][0]["command"] == ["moked", "migrate"]
    for doc in workloads(kustomization):
        images = [c["image"] for c in containers(doc, init=False)]
        if doc["kind"] in ONE_SHOT or not any(i.startswith("moked/") for i in images):
            continue
        if doc["metadata"]["name"] == "nginx":
            continue  # nginx itself needs no schema; its replay sidecar waits on Postgres
        init = pod_spec(doc)["initContainers"][0]
        assert init["command"] == ["python", "-m", "moked.kube", "wait-for-schema"], name_of(doc)
        app_image = pod_spec(doc)["containers"][0]["image"]
        assert init["image"] == app_image, name_of(doc)


def _scaled_targets(kustomization: str) -> set[str]:
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in objects(kustomization, "HorizontalPodAutoscaler")
    }
    targets |= {
        so["spec"]["scaleTargetRef"]["name"] for so in objects(kustomization, "ScaledObject")
    }
    return targets


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_multi_replica_workloads_have_a_pdb_and_spread_across_nodes(kustomization: str) -> None:
    pdbs = objects(kustomization, "PodDisruptionBudget")
    scaled = _scaled_targets(kustomization)
    several = [
        doc
        for doc in workloads(kustomization)
        if doc["kind"] not in ONE_SHOT
        and (doc["spec"].get("replicas", 1) > 1 or doc["metadata"]["name"] in scaled)
    ]
    assert {d["metadata"]["name"] for d in several} >= {
        "webhooks",
        "nginx",
        "crm-ui",
        "transcriber",
        "notifier",
    }
    for doc in several:
        labels = pod_labels(doc)
        assert any(selects(pdb["spec"]["selector"], labels) for pdb in pdbs), name_of(doc)
        spread = pod_spec(doc)["topologySpreadConstraints"]
        assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread), name_of(doc)
        for constraint in spread:
            assert selects(constraint["labelSelector"], labels), name_of(doc)


def test_webhooks_scale_on_cpu_from_two_and_transcribers_on_the_queue() -> None:
    hpa = one("base", "HorizontalPodAutoscaler", "webhooks")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for kustomization in KUSTOMIZATIONS:
        trigger = one(kustomization, "ScaledObject", "transcriber")["spec"]["triggers"][0]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == "rq:queue:transcription"


def test_the_rq_queue_keda_reads_is_the_transcription_queue() -> None:
    from rq import Queue

    from moked.queue import TRANSCRIPTION_QUEUE

    trigger = one("base", "ScaledObject", "transcriber")["spec"]["triggers"][0]
    key = Queue.redis_queue_namespace_prefix + TRANSCRIPTION_QUEUE
    assert trigger["metadata"]["listName"] == key


def test_one_reconciler_at_a_time() -> None:
    reconciler = one("base", "Deployment", "reconciler")
    assert reconciler["spec"]["replicas"] == 1
    assert reconciler["spec"]["strategy"]["type"] == "Recreate"


def test_gpu_overlay_puts_transcribers_on_gpu_nodes() -> None:
    transcriber = one("overlays/gpu", "Deployment", "transcriber")
    spec = pod_spec(transcriber)
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["nodeSelector"]
    container = spec["containers"][0]
    assert container["image"].startswith("moked/transcriber-gpu:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WHISPER_COMPUTE_TYPE"] == "float16"
    assert "PROMETHEUS_MULTIPROC_DIR" in env  # the base's env is merged, not replaced


def _policies_selecting(kustomization: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        np
        for np in objects(kustomization, "NetworkPolicy")
        if np["spec"]["podSelector"] and selects(np["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies_deny_by_default_and_cover_every_pod(kustomization: str) -> None:
    deny = one(kustomization, "NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
    for doc in workloads(kustomization):
        own = _policies_selecting(kustomization, pod_labels(doc))
        assert own, f"no NetworkPolicy of its own for {name_of(doc)}"


def _from_peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [{}])]


MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_only_nginx_reaches_the_webhooks_and_the_crm(kustomization: str) -> None:
    nginx = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nginx"}}}
    for app in ("webhooks", "crm-ui"):
        labels = pod_labels(
            one(kustomization, "StatefulSet" if app == "webhooks" else "Deployment", app)
        )
        for policy in _policies_selecting(kustomization, labels):
            for peer in _from_peers(policy):
                assert peer in (nginx, MONITORING), (app, peer)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_only_moked_pods_reach_redis_and_postgres(kustomization: str) -> None:
    moked = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "moked"}}}
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    redis = one(kustomization, "NetworkPolicy", "redis")
    for rule in redis["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        for peer in rule["from"]:
            assert peer in (moked, keda) if 6379 in ports else peer == MONITORING, peer
    if kustomization == "base":
        return
    postgres = one(kustomization, "NetworkPolicy", "postgres")
    cluster = {"podSelector": {"matchLabels": {"cnpg.io/cluster": "moked-db"}}}
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}
    }
    assert all(peer in (moked, cluster, operator) for peer in _from_peers(postgres))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_egress_to_the_internet_only_where_needed(kustomization: str) -> None:
    def internet(policy: dict[str, Any]) -> bool:
        return any(
            "ipBlock" in peer
            for rule in policy["spec"].get("egress", [])
            for peer in rule.get("to", [])
        )

    outbound = {
        np["metadata"]["name"] for np in objects(kustomization, "NetworkPolicy") if internet(np)
    }
    assert outbound == {"crm-ui", "transcriber", "notifier", "reconciler", "moked-cli"}
    transcriber = one(kustomization, "NetworkPolicy", "transcriber")
    ports = {
        p["port"]
        for rule in transcriber["spec"]["egress"]
        if "to" in rule and "ipBlock" in rule["to"][0]
        for p in rule["ports"]
    }
    assert ports == {443}


def test_production_runs_postgres_as_three_cloudnativepg_instances() -> None:
    for kustomization in OVERLAYS:
        cluster = one(kustomization, "Cluster", "moked-db")
        assert cluster["spec"]["instances"] == 3
        assert cluster["spec"]["affinity"]["podAntiAffinityType"] == "required"
        assert cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"] == "moked-db-owner"
        assert one(kustomization, "Ingress", "moked")["spec"]["tls"][0]["secretName"] == "moked-tls"
    assert not objects("base", "Cluster")


# --- where the state goes -----------------------------------------------------------------


def _mounts(doc: dict[str, Any], container: str) -> dict[str, dict[str, Any]]:
    found = [c for c in containers(doc) if c["name"] == container]
    return {m["mountPath"]: m for m in found[0].get("volumeMounts", [])}


def _volume(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(doc)["volumes"] if v["name"] == name)


def test_the_state_lives_where_docs_say() -> None:
    media = one("base", "PersistentVolumeClaim", "moked-media")
    assert media["spec"]["accessModes"] == ["ReadWriteMany"]
    settings = one("base", "ConfigMap", _settings_name("base"))["data"]
    media_root = "/srv/moked/media"
    assert settings["GREETINGS_DIR"].startswith(media_root + "/")
    assert settings["RECORDINGS_DIR"].startswith(media_root + "/")
    readers = {
        ("StatefulSet", "webhooks", "webhooks"): False,
        ("StatefulSet", "nginx", "nginx"): True,
        ("Deployment", "crm-ui", "crm-ui"): False,
        ("Deployment", "transcriber", "transcriber"): False,
        ("Deployment", "notifier", "notifier"): True,
    }
    for (kind, name, container), read_only in readers.items():
        doc = one("base", kind, name)
        mount = _mounts(doc, container)[media_root]
        assert bool(mount.get("readOnly")) is read_only, name
        volume = _volume(doc, mount["name"])
        assert volume["persistentVolumeClaim"]["claimName"] == "moked-media"
    # The spool: a volume per webhooks pod that comes back with the pod's name.
    webhooks = one("base", "StatefulSet", "webhooks")
    spool = _mounts(webhooks, "webhooks")[settings["SPOOL_DIR"]]
    templates = {t["metadata"]["name"] for t in webhooks["spec"]["volumeClaimTemplates"]}
    assert spool["name"] in templates
    assert webhooks["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    # Last-known answers: rebuilt on start, an emptyDir.
    state = _mounts(webhooks, "webhooks")[settings["STATE_DIR"]]
    assert "emptyDir" in _volume(webhooks, state["name"])
    # nginx's fallback log: a volume per nginx pod, replayed by the sidecar beside it.
    nginx = one("base", "StatefulSet", "nginx")
    log_dir = str(Path(settings["NGINX_FALLBACK_LOG"]).parent)
    for container in ("nginx", "replay-fallback"):
        mount = _mounts(nginx, container)[log_dir]
        assert mount["name"] in {
            t["metadata"]["name"] for t in nginx["spec"]["volumeClaimTemplates"]
        }


def test_nginx_rendered_from_the_configmap_serves_from_its_mounts() -> None:
    """`moked render-nginx --docker` (nginx's init container) with the ConfigMap's paths:
    greetings and recordings from the media mount, the fallback log on the log volume."""
    from moked.stack.docker import DockerNginx, render_docker_nginx

    settings = _production_settings("base")
    conf = render_docker_nginx(settings, DockerNginx())["nginx.conf"]
    nginx = one("base", "StatefulSet", "nginx")
    mounts = _mounts(nginx, "nginx")
    for directory in (settings.greetings_dir, settings.recordings_dir):
        assert f"alias {directory}/" in conf
        assert any(directory.is_relative_to(path) for path in map(Path, mounts))
    assert f"access_log {settings.nginx_fallback_log} twilio_fallback" in conf
    assert str(settings.nginx_fallback_log.parent) in mounts
    # Its upstreams are the compose service names: the Services carry the same names and ports.
    for service in ("webhooks", "crm-ui"):
        port = one("base", "Service", service)["spec"]["ports"][0]["port"]
        assert f"server {service}:{port} " in conf


# --- Settings ↔ ConfigMap and Secret ------------------------------------------------------

FIELDS = {name.upper(): info for name, info in Settings.model_fields.items()}
SECRET_FIELDS = {n for n, info in FIELDS.items() if info.annotation is SecretStr}
# Settings whose defaults do not suit the Kubernetes pods but that they do not need:
# development-only helpers, and the compose stack's own Prometheus/Alertmanager (the
# Prometheus Operator's replace them here).
NOT_NEEDED = {
    "HTTP_PORT", "MAIL_DIR", "TWILIO_SIM_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT",
    "PROMETHEUS_SCRAPE_INTERVAL", "PROMETHEUS_RETENTION", "NGINX_EXPORTER_PORT",
    "POSTGRES_EXPORTER_PORT", "REDIS_EXPORTER_PORT", "ALERT_EMAIL_TO", "ALERT_EMAIL_FROM",
    "ALERT_SMTP_SMARTHOST", "ALERT_SMTP_USERNAME", "ALERT_SMTP_PASSWORD",
    "ALERT_SMTP_REQUIRE_TLS", "ALERT_WEBHOOK_URL",
}  # fmt: skip
# Production refuses to start without these (Settings._check) or needs them set for pods.
PRODUCTION_REQUIRED = {
    "MOKED_ENV", "PUBLIC_HOST", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SECRET_KEY",
    "SMTP_URL", "MAIL_FROM", "WEBHOOKS_WORKERS", "CRM_WORKERS", "WHISPER_THREADS",
}  # fmt: skip


def _settings_name(kustomization: str) -> str:
    names: list[str] = [
        cm["metadata"]["name"]
        for cm in objects(kustomization, "ConfigMap")
        if cm["metadata"]["name"].startswith("moked-settings")
    ]
    assert len(names) == 1, names
    return names[0]


def _secret_keys() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in (KUBE / "secrets.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _unsuitable_default(name: str) -> bool:
    """A default that is wrong in a pod: loopback addresses, paths relative to a checkout."""
    default = FIELDS[name].default
    if isinstance(default, Path):
        return not default.is_absolute()
    if isinstance(default, SecretStr):
        return not default.get_secret_value()
    return isinstance(default, str) and bool(re.search(r"127\.0\.0\.1|localhost", default))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_configmap_and_secret_keys_are_exactly_settings(kustomization: str) -> None:
    config = one(kustomization, "ConfigMap", _settings_name(kustomization))["data"]
    secret = _secret_keys()
    assert set(config) <= set(FIELDS), set(config) - set(FIELDS)
    assert set(secret) <= set(FIELDS), set(secret) - set(FIELDS)
    assert not set(config) & set(secret)
    assert not set(config) & SECRET_FIELDS, "a SecretStr setting in the ConfigMap"
    assert set(secret) >= SECRET_FIELDS - NOT_NEEDED
    needed = {n for n in FIELDS if _unsuitable_default(n)} - NOT_NEEDED
    missing = (needed | PRODUCTION_REQUIRED) - set(config) - set(secret)
    assert not missing, f"settings the pods need but neither carries: {sorted(missing)}"
    # The carried values make valid production settings (with real-looking secrets).
    assert _production_settings(kustomization).is_production


def _production_settings(kustomization: str) -> Settings:
    """Settings from the ConfigMap and the Secret's example, its placeholders filled."""
    config = one(kustomization, "ConfigMap", _settings_name(kustomization))["data"]
    filled = dict(_secret_keys())
    filled |= {"TWILIO_AUTH_TOKEN": "f" * 32, "SECRET_KEY": "k" * 64}
    filled["DATABASE_URL"] = filled["DATABASE_URL"].replace("change-me", "pw")
    filled["SMTP_URL"] = filled["SMTP_URL"].replace("change-me", "pw")
    values = {k.lower(): v for k, v in (config | filled).items()}
    values["twilio_account_sid"] = "AC" + "1" * 32
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pods_read_the_settings_and_the_secret_by_name(kustomization: str) -> None:
    config = _settings_name(kustomization)
    # Variables set on a container itself: Settings fields, or not Moked's at all.
    others = {"PROMETHEUS_MULTIPROC_DIR", "REDIS_PASSWORD", "REDISCLI_AUTH", "REDIS_ADDR"}
    for doc in workloads(kustomization):
        for container in containers(doc):
            sources = container.get("envFrom", [])
            if container["image"].startswith("moked/") and container["name"] != "nginx":
                refs = [s.get("configMapRef", s.get("secretRef", {}))["name"] for s in sources]
                assert refs == [config, "moked-secrets"], (name_of(doc), refs)
            for variable in container.get("env", []):
                assert variable["name"] in set(FIELDS) | others, variable["name"]


def test_the_secret_example_is_not_in_the_manifests() -> None:
    for kustomization in KUSTOMIZATIONS:
        assert not [s for s in objects(kustomization, "Secret")], "secrets are created by hand"


# --- monitoring ---------------------------------------------------------------------------


def test_the_committed_prometheus_rule_is_the_rendering_of_the_rules() -> None:
    committed = (KUBE / "base" / "monitoring" / "prometheus-rule.yaml").read_text(encoding="utf-8")
    assert committed == k8s_prometheus_rule.render(), "run scripts/k8s-prometheus-rule"
    for kustomization in KUSTOMIZATIONS:
        rule = one(kustomization, "PrometheusRule", "moked")
        assert rule["spec"]["groups"] == k8s_prometheus_rule.groups()


def test_the_rule_rendering_follows_a_changed_rule(tmp_path: Path) -> None:
    for path in k8s_prometheus_rule.RULES_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    webhooks = tmp_path / "webhooks.yml"
    webhooks.write_text(webhooks.read_text().replace("for: 1m", "for: 2m", 1))
    assert k8s_prometheus_rule.render(tmp_path) != k8s_prometheus_rule.render()


def _metrics_ports(doc: dict[str, Any]) -> set[str]:
    """Ports serving Prometheus' /metrics: probed there, or the apps' own http port."""
    ports = set()
    for container in containers(doc, init=False):
        for probe in ("readinessProbe", "livenessProbe"):
            http = container.get(probe, {}).get("httpGet", {})
            if http.get("path") == "/metrics":
                ports.add(http["port"])
        if container["name"] in ("webhooks", "crm-ui"):
            ports.add("http")
        if container["name"] == "redis-exporter":
            ports.add("exporter")
    return ports


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_metrics_port_is_scraped_with_the_job_the_rules_name(kustomization: str) -> None:
    monitors = objects(kustomization, "PodMonitor")
    jobs: set[str] = set()
    for doc in workloads(kustomization):
        labels = pod_labels(doc)
        for port in _metrics_ports(doc):
            scraping = [
                m
                for m in monitors
                if selects(m["spec"]["selector"], labels)
                and port in {e["port"] for e in m["spec"]["podMetricsEndpoints"]}
            ]
            assert scraping, f"{name_of(doc)} port {port} is not scraped"
        for monitor in monitors:
            if selects(monitor["spec"]["selector"], labels):
                default = labels[monitor["spec"]["jobLabel"]]
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    relabel = [
                        r for r in endpoint.get("relabelings", []) if r["targetLabel"] == "job"
                    ]
                    jobs.add(relabel[0]["replacement"] if relabel else default)
    named = set()
    for group in k8s_prometheus_rule.groups():
        for rule in group["rules"]:
            named |= set(re.findall(r'job="([^"]+)"', rule["expr"]))
    # `prometheus` is the Prometheus Operator's own job (docs/deploy-kubernetes.md).
    assert named - {"prometheus"} <= jobs, named - jobs
    assert {
        "webhooks",
        "crm-ui",
        "transcriber",
        "reconciler",
        "notifier",
        "nginx",
        "redis",
        "postgres",
    } <= jobs


def test_the_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    dashboards = sorted(p.name for p in (REPO / "monitoring/grafana/dashboards").glob("*.json"))
    for kustomization in KUSTOMIZATIONS:
        cm = one(kustomization, "ConfigMap", "moked-grafana-dashboards")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert sorted(cm["data"]) == dashboards
        for name in dashboards:
            assert json.loads(cm["data"][name])["uid"]


def test_provision_and_doctor_run_as_jobs_from_suspended_cronjobs() -> None:
    commands = {
        cron["metadata"]["name"]: pod_spec(cron)["containers"][0]["command"]
        for cron in objects("base", "CronJob")
    }
    assert commands == {
        "moked-provision": ["moked", "provision"],
        "moked-provision-apply": ["moked", "provision", "--apply"],
        "moked-doctor": ["moked", "doctor"],
    }
    assert all(cron["spec"]["suspend"] for cron in objects("base", "CronJob"))
