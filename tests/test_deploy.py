"""The deployment files keep their contract with the service: the port it listens on, the paths it answers,
/models for checkpoints, a non-root user, and a build context without runs, data or checkpoints.
(`make container-smoke` builds and runs the image itself; that takes minutes, so it is not part of this suite.)"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import ServiceSettings, settings_from

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy/k8s"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def env_in_image() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def docker_pattern(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression over context-relative paths."""
    out, rest = "", pattern.strip("/")
    while rest:
        if rest.startswith("**/"):
            out, rest = out + "(?:.*/)?", rest[3:]
        elif rest.startswith("**"):
            out, rest = out + ".*", rest[2:]
        elif rest[0] == "*":
            out, rest = out + "[^/]*", rest[1:]
        elif rest[0] == "?":
            out, rest = out + "[^/]", rest[1:]
        else:
            out, rest = out + re.escape(rest[0]), rest[1:]
    return out


def k8s_documents() -> dict[str, dict]:
    docs = [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {doc["kind"]: doc for doc in docs}


def test_dockerfile_base_stages_user_port_and_healthcheck():
    instructions = dockerfile_instructions()
    names = [name for name, _ in instructions]
    assert instructions[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")  # before FROM: a build argument
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) >= 2 and all(args.startswith("${BASE_IMAGE}") for args in froms)  # multi-stage
    assert "COPY --from=build /opt/venv /opt/venv" in [f"COPY {args}" for name, args in instructions if name == "COPY"]
    user = [args for name, args in instructions if name == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("EXPOSE", "8000") in instructions
    healthcheck = [args for name, args in instructions if name == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "/health" in healthcheck[0]
    # Exec form, so the server is PID 1 and gets SIGTERM itself.
    assert next(args for name, args in instructions if name == "ENTRYPOINT").startswith("[")
    assert names.index("USER") > names.index("FROM", names.index("FROM") + 1)  # the runtime stage's user


def test_image_environment_is_valid_service_settings():
    """The image's SEQ2SEQ_* defaults pass the service's own validation: every interface, port 8000, /models."""
    env = env_in_image()
    settings = settings_from({}, env)
    assert (settings.host, settings.port, settings.models_dir) == ("0.0.0.0", 8000, "/models")


def test_dockerignore_keeps_runs_data_and_checkpoints_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        """Docker's rule: '*' stays within one folder, '**' spans folders, and a matched folder takes its contents."""
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(re.fullmatch(docker_pattern(p), prefix) for p in patterns for prefix in prefixes)

    for path in ["runs/x/checkpoints/best.pt", "data/multi30k/train.de.gz", "model.pt", "models/de-en/best.pt",
                 ".venv/bin/python", "logs/serve.log", ".git/HEAD", "seq2seq/__pycache__/cli.cpython-311.pyc"]:
        assert ignored(path), path
    # What the Dockerfile copies must stay in.
    for path in ["pyproject.toml", "README.md", "seq2seq/cli.py", "service/app.py", "service/static/index.html"]:
        assert not ignored(path), path


def test_installed_package_carries_its_non_python_files():
    """The image installs the project as a package: files other than modules ship only if declared."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    for path in [*(ROOT / "seq2seq").rglob("*"), *(ROOT / "service").rglob("*")]:
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            package, *inside = path.relative_to(ROOT).parts
            globs = package_data.get(package, [])
            assert any(Path(*inside).match(glob) for glob in globs), f"{path} is not package data"


def test_compose_serves_models_on_8000():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["translate"]
    assert service["build"]["context"] == "."
    assert any(port.endswith(":8000") for port in service["ports"])
    assert any(volume.endswith(":/models:ro") for volume in service["volumes"])
    # Every setting it passes is one the service knows.
    passed = {name.removeprefix("SEQ2SEQ_").lower() for name in service["environment"]}
    assert passed <= set(ServiceSettings.model_fields)


def test_kubernetes_probes_resources_service_and_autoscaler():
    docs = k8s_documents()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "http", "containerPort": 8000} in container["ports"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])
    assert any(m["mountPath"] == "/models" and m.get("readOnly") for m in container["volumeMounts"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > float(
        next(e["value"] for e in container["env"] if e["name"] == "SEQ2SEQ_GRACEFUL_SHUTDOWN_S"))
    labels = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["Service"]["spec"]["ports"][0]["port"] == 8000
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", docs["Deployment"]["metadata"]["name"])
    # The image's user is the one the pod runs as.
    assert str(pod["securityContext"]["runAsUser"]) == next(
        args for name, args in dockerfile_instructions() if name == "USER").split(":")[0]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_builds():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(out.stdout)}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler"}


SETTINGS_TABLE_HEADER = ["variable", "default", "description (service/settings.py)", "notes"]


def readme_settings_table() -> list[list[str]]:
    """The rows of the README's settings table (the operator's reference), each as its four cells."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    headers = [i for i, line in enumerate(lines) if line.startswith("|") and cells(line) == SETTINGS_TABLE_HEADER]
    assert len(headers) == 1, "the README has exactly one settings table"
    rows = []
    for line in lines[headers[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def test_readme_settings_table_matches_the_service_settings():
    """The README's settings table lists each field of ServiceSettings once, as SEQ2SEQ_ + its upper-cased name,
    with its default (written as the variable's value, 'unset' for None, 'empty' for an empty list or mapping)
    and its Field description word for word ('—' where the field has none)."""
    rows = readme_settings_table()
    assert all(len(row) == len(SETTINGS_TABLE_HEADER) for row in rows), [row for row in rows if len(row) != 4]
    names = [re.fullmatch(r"`(SEQ2SEQ_[A-Z0-9_]+)`", row[0]).group(1) for row in rows]
    expected = [f"SEQ2SEQ_{name.upper()}" for name in ServiceSettings.model_fields]
    assert sorted(names) == sorted(expected), (set(expected) - set(names), set(names) - set(expected))
    assert len(set(names)) == len(names), "each setting appears once"
    for (_variable, default_cell, description_cell, _notes), name in zip(rows, names, strict=True):
        field_name = name.removeprefix("SEQ2SEQ_").lower()
        field = ServiceSettings.model_fields[field_name]
        default = field.get_default(call_default_factory=True)
        assert description_cell == (field.description or "—"), (name, description_cell, field.description)
        written = re.match(r"`([^`]*)`|(unset|empty)\b", default_cell)
        assert written, (name, default_cell)
        if written.group(2) == "unset":
            assert default is None, (name, default)
            continue
        value = "" if written.group(2) == "empty" else written.group(1)
        parsed = getattr(settings_from({}, {name: value}), field_name)
        assert parsed == default, (name, default_cell, default)


def test_readme_names_no_setting_the_service_lacks():
    """Every SEQ2SEQ_* name anywhere in the README is a setting of service/settings.py, or one of the fused
    kernels' two library variables."""
    from seq2seq.model.fused import CACHE_VARIABLE, SWITCH_VARIABLE

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    known = {f"SEQ2SEQ_{name.upper()}" for name in ServiceSettings.model_fields} | {CACHE_VARIABLE, SWITCH_VARIABLE}
    assert sorted(set(re.findall(r"SEQ2SEQ_[A-Z0-9_]+", readme)) - known) == []
