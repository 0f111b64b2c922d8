"""compose.yaml as the single source of truth for the Docker images: build, health check, GPUs.

``docker compose`` and the runner read the same file. The runner takes from a service its image
tag, its build (context, Dockerfile, arguments, target), its health check and its GPU request;
each cell then lays its own command, model mounts and port over it. Variables are interpolated
as compose does (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
``$$``), from the environment or from the mapping the caller passes, so that a variant (the CPU
image of the tests, another CUDA base) is chosen the same way for both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.paths import PACKAGE_DIR

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)
_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|us|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def compose_path() -> Path:
    """The shipped ``compose.yaml`` (the repository root in a checkout)."""
    inside = PACKAGE_DIR / "_compose.yaml"
    return inside if inside.is_file() else PACKAGE_DIR.parent / "compose.yaml"


class BuildSpec(BaseModel):
    """How compose builds a service's image."""

    context: Path
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None


class HealthCheck(BaseModel):
    """A compose health check, with durations in seconds."""

    test: list[str]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0

    def docker_config(self) -> dict[str, Any]:
        """The check as the Docker API's ``Healthcheck`` object (durations in nanoseconds)."""
        ns = lambda s: int(s * 1e9)  # noqa: E731
        return {"test": self.test, "interval": ns(self.interval_s), "timeout": ns(self.timeout_s),
                "retries": self.retries, "start_period": ns(self.start_period_s)}


class GpuRequest(BaseModel):
    """A ``deploy.resources.reservations.devices`` entry with ``capabilities: [gpu]``."""

    driver: str = "nvidia"
    count: int = -1  # -1: all
    device_ids: list[str] | None = None


class Service(BaseModel):
    """One compose service, interpolated."""

    name: str
    image: str
    build: BuildSpec | None = None
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    healthcheck: HealthCheck | None = None
    gpu: GpuRequest | None = None
    profiles: list[str] = Field(default_factory=list)
    ipc: str | None = None
    user: str | None = None


class ComposeFile(BaseModel):
    """The services of one compose file."""

    path: Path
    services: dict[str, Service]

    def service(self, name: str) -> Service:
        """The service ``name``, or a ``UserError`` naming the file and the services it has."""
        if name not in self.services:
            raise UserError(f"{self.path}: no service {name!r}; services: {', '.join(self.services)}")
        return self.services[name]


def interpolate(text: str, env: Mapping[str, str], where: str = "compose.yaml") -> str:
    """Substitute ``$VAR`` / ``${VAR...}`` as compose does; ``$$`` is a literal ``$``."""

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise UserError(f"{where}: invalid variable ${{{match.group('braced')}}}; use ${{NAME}} or ${{NAME:-default}}")
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg")
        value = env.get(name)
        if op is None:
            return value or ""
        # nested variables in defaults (${A:-${B}}) are interpolated too
        arg = interpolate(arg, env, where) if arg else ""
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset_or_empty else value
        if op.endswith("+"):
            return "" if unset_or_empty else arg
        if unset_or_empty:  # "?" / ":?"
            raise UserError(f"{where}: variable {name} is required: {arg or 'set it in the environment'}")
        return value

    return _VARIABLE.sub(substitute, text)


def _walk(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_walk(item, env, where) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env, where) for key, value in node.items()}
    return node


def parse_duration(value: str | int | float, where: str) -> float:
    """Compose durations (``1m30s``, ``10s``, ``500ms``) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise UserError(f"{where} = {value!r}: not a duration; write e.g. 10s, 1m30s or 500ms")
    return sum(float(p.group("value")) * _UNIT_SECONDS[p.group("unit")] for p in parts)


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]  # compose's string form runs through a shell
    return [str(v) for v in value]


def _environment(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    env = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        env[key] = val
    return env


def _service(name: str, raw: dict[str, Any], base: Path, where: str) -> Service:
    image = raw.get("image")
    if not image:
        raise UserError(f"{where}: services.{name}.image is missing; the runner tags its builds with it")
    build = raw.get("build")
    build_spec = None
    if isinstance(build, str):
        build_spec = BuildSpec(context=(base / build).resolve())
    elif isinstance(build, dict):
        args = build.get("args") or {}
        if isinstance(args, list):
            args = dict(str(a).partition("=")[::2] for a in args)
        build_spec = BuildSpec(context=(base / build.get("context", ".")).resolve(),
                               dockerfile=build.get("dockerfile", "Dockerfile"),
                               args={str(k): "" if v is None else str(v) for k, v in args.items()},
                               target=build.get("target"))
    health = raw.get("healthcheck")
    health_spec = None
    if health and not health.get("disable"):
        at = f"{where}: services.{name}.healthcheck"
        test = health.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        health_spec = HealthCheck(
            test=[str(t) for t in test],
            interval_s=parse_duration(health.get("interval", "30s"), f"{at}.interval"),
            timeout_s=parse_duration(health.get("timeout", "30s"), f"{at}.timeout"),
            retries=int(health.get("retries", 3)),
            start_period_s=parse_duration(health.get("start_period", "0s"), f"{at}.start_period"),
        )
    gpu = None
    devices = (((raw.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    for device in devices:
        if "gpu" in (device.get("capabilities") or []):
            count = device.get("count", "all")
            gpu = GpuRequest(driver=device.get("driver", "nvidia"),
                             count=-1 if str(count) == "all" else int(count),
                             device_ids=[str(d) for d in device["device_ids"]] if device.get("device_ids") else None)
    return Service(name=name, image=str(image), build=build_spec, entrypoint=_as_list(raw.get("entrypoint")),
                   command=_as_list(raw.get("command")), environment=_environment(raw.get("environment")),
                   healthcheck=health_spec, gpu=gpu, profiles=[str(p) for p in raw.get("profiles") or []],
                   ipc=raw.get("ipc"), user=raw.get("user"))


def load_compose(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> ComposeFile:
    """Read and interpolate a compose file (default: the shipped ``compose.yaml``) with ``env`` (default: os.environ)."""
    path = Path(path) if path else compose_path()
    where = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no compose file there; the runner ships compose.yaml at the repository root") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise UserError(f"{where}: no `services:` mapping")
    document = _walk(document, os.environ if env is None else env, where)
    services = {name: _service(name, raw or {}, path.parent, where) for name, raw in document["services"].items()}
    return ComposeFile(path=path, services=services)
