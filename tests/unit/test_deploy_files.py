"""The deployment recipes, read: Dockerfile, .dockerignore, docker-compose.yml, render.yaml and the systemd unit.

No container runtime can run on the machines that run these tests (no daemon, and the base image's
registry is out of reach), so what a build would show is checked here by reading the files, and
tests/e2e/test_deploy_commands.py runs each entry command as a process.
"""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest

from tests.deploy_files import (
    ROOT,
    compose,
    dockerfile,
    dockerfile_env,
    exec_form,
    render,
    render_commented_variant,
    substitute,
    systemd_unit,
)
from tsrevel.entrypoints.legacy_import import read_env_file
from tsrevel.entrypoints.settings import Settings

# Every variable tsrevel reads, plus what the platforms themselves use.
TSREVEL_VARIABLES = {name for name, _ in Settings().describe()} | {"PORT", "HOST"}


def serve_args(command: str) -> list[str]:
    """The words after `tsrevel serve` in a shell command line."""
    words = shlex.split(command.removeprefix("exec "))
    at = next(i for i, w in enumerate(words) if w.endswith("tsrevel") and words[i + 1] == "serve")
    return words[at + 2 :]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


class TestDockerfile:
    ins = dockerfile()

    def of(self, keyword: str) -> list[str]:
        return [i.args for i in self.ins if i.keyword == keyword]

    def test_the_base_is_a_slim_python_image(self) -> None:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", self.of("FROM")[0])

    def test_it_runs_as_a_non_root_user_created_in_the_image(self) -> None:
        users = self.of("USER")
        assert users and users[-1] not in ("root", "0")
        assert any("useradd" in run and users[-1] in run for run in self.of("RUN"))
        last_user = max(i for i, ins in enumerate(self.ins) if ins.keyword == "USER")
        last_run = max(i for i, ins in enumerate(self.ins) if ins.keyword == "RUN")
        assert last_user > last_run, "the install runs as root, the service does not"

    def test_the_package_is_installed_from_the_checkout(self) -> None:
        copied = " ".join(self.of("COPY"))
        assert "src" in copied and "pyproject.toml" in copied and "README.md" in copied  # pyproject's readme
        assert any(re.search(r"pip install \.(\s|$)", run) for run in self.of("RUN"))

    def test_the_command_is_tsrevel_serve_on_all_interfaces_and_port(self) -> None:
        cmd = exec_form(self.of("CMD")[-1])
        assert cmd[:2] == ["sh", "-c"] and cmd[2].startswith("exec "), "tsrevel must be PID 1 to get SIGTERM"
        args = serve_args(cmd[2])
        assert option(args, "--host") == "0.0.0.0"
        assert re.fullmatch(r"\$\{?PORT(:-\d+)?\}?", option(args, "--port"))
        assert not self.of("ENTRYPOINT")

    def test_the_healthcheck_asks_ready_with_python_not_curl(self) -> None:
        check = self.of("HEALTHCHECK")[0]
        assert "CMD" in check
        cmd = exec_form(check.split("CMD", 1)[1].strip())
        assert cmd[:2] == ["python", "-c"] and "urllib.request" in cmd[2] and "/ready" in cmd[2] and "PORT" in cmd[2]
        assert "curl" not in check

    def test_var_is_a_volume_and_the_database_lives_in_it(self) -> None:
        volumes = [v for args in self.of("VOLUME") for v in exec_form(args)]
        assert volumes == ["/app/var"]
        assert dockerfile_env(self.ins)["TSREVEL_DATABASE_URL"] == "sqlite:////app/var/tsrevel.db"

    def test_its_environment_is_a_valid_tsrevel_configuration(self) -> None:
        env = dockerfile_env(self.ins)
        ours = {k: v for k, v in env.items() if not k.startswith(("PYTHON", "PIP_"))}
        assert set(ours) <= TSREVEL_VARIABLES
        settings = Settings.from_env(env)
        assert settings.dry_run and (ROOT / env["TSREVEL_MAPPING_FILE"].removeprefix("/app/")).exists()


class TestDockerignore:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]

    def ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)

    @pytest.mark.parametrize("name", [".git", ".venv", "var", ".env", "prod.env", "tsrevel.db", "__pycache__", "tests"])
    def test_state_secrets_and_tooling_stay_out_of_the_image(self, name: str) -> None:
        assert self.ignored(name)

    def test_what_the_dockerfile_copies_is_not_ignored(self) -> None:
        copied = [word for args in (i.args for i in dockerfile() if i.keyword == "COPY") for word in args.split()[:-1]]
        assert copied and [name for name in copied if self.ignored(name)] == []
        assert all((ROOT / name).exists() for name in copied)


class TestCompose:
    spec = compose()

    def test_postgresql_and_tsrevel_with_two_replicas(self) -> None:
        services = self.spec["services"]
        assert set(services) == {"postgres", "tsrevel"}
        assert services["postgres"]["image"].startswith("postgres:")
        app = services["tsrevel"]
        assert app["build"] == "." and app["deploy"]["replicas"] == 2
        assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "healthcheck" in services["postgres"]
        assert "command" not in app and "entrypoint" not in app  # the image's own CMD runs
        assert app["stop_grace_period"] == "30s"

    def test_the_replicas_share_the_compose_database(self) -> None:
        env = {k: substitute(str(v)) for k, v in self.spec["services"]["tsrevel"]["environment"].items()}
        pg = self.spec["services"]["postgres"]["environment"]
        assert env["TSREVEL_DATABASE_URL"] == f"postgresql://{pg['POSTGRES_USER']}:tsrevel@postgres:5432/{pg['POSTGRES_DB']}"

    def test_its_environment_is_known_to_tsrevel_and_valid_with_the_defaults(self) -> None:
        env = {k: substitute(str(v)) for k, v in self.spec["services"]["tsrevel"]["environment"].items()}
        assert set(env) <= TSREVEL_VARIABLES
        settings = Settings.from_env(env)
        assert settings.database_url.startswith("postgresql://") and settings.dry_run

    def test_a_production_environment_from_the_shell_flows_through(self) -> None:
        shell = {"DRY_RUN": "false", "REVEL_BASE_URL": "https://acme.revelup.com", "REVEL_API_KEY": "k", "REVEL_API_SECRET": "s",
                 "TRIPLESEAT_SIGNING_SECRET": "sig", "ALLOWED_LOCATIONS": "201,site:15691",
                 "REVEL_LEGACY_LOCAL_IDS": "Triple Seat {event_id}"}
        env = {k: substitute(str(v), shell) for k, v in self.spec["services"]["tsrevel"]["environment"].items()}
        settings = Settings.from_env(env)
        assert not settings.dry_run and settings.revel_legacy_local_ids == ("Triple Seat {event_id}",)


class TestRender:
    spec = render()

    def web(self) -> dict:
        (service,) = self.spec["services"]
        return service

    def test_a_web_service_that_serves_on_port_and_checks_ready(self) -> None:
        web = self.web()
        assert web["type"] == "web" and web["buildCommand"] == "pip install ."
        args = serve_args(web["startCommand"])
        assert option(args, "--host") == "0.0.0.0" and option(args, "--port") == "$PORT"
        assert web["healthCheckPath"] == "/ready"

    def test_the_sqlite_database_is_on_the_persistent_disk(self) -> None:
        web = self.web()
        env = {e["key"]: e for e in web["envVars"]}
        mount = web["disk"]["mountPath"]
        assert web["disk"]["sizeGB"] >= 1
        assert env["TSREVEL_DATABASE_URL"]["value"] == f"sqlite:///{mount}/tsrevel.db"
        assert "numInstances" not in web  # a disk means one instance

    def test_secrets_are_prompted_or_generated_never_written(self) -> None:
        env = {e["key"]: e for e in self.web()["envVars"]}
        for name in ("TRIPLESEAT_SIGNING_SECRET", "REVEL_API_KEY", "REVEL_API_SECRET", "SENDGRID_API_KEY"):
            assert env[name] == {"key": name, "sync": False}
        assert env["TSREVEL_ADMIN_TOKEN"] == {"key": "TSREVEL_ADMIN_TOKEN", "generateValue": True}

    def test_its_values_are_known_to_tsrevel_and_valid(self) -> None:
        values = {e["key"]: e["value"] for e in self.web()["envVars"] if "value" in e}
        assert set(values) - {"PYTHON_VERSION"} <= TSREVEL_VARIABLES
        settings = Settings.from_env(values)
        assert (ROOT / settings.mapping_file).is_file(), "the blueprint as committed must start"
        assert settings.dry_run and settings.order_on_statuses == frozenset({"CLOSED"})
        assert settings.revel_legacy_local_ids == ("Triple Seat {event_id}",)

    def test_the_commented_postgresql_variant_is_a_blueprint_with_a_database(self) -> None:
        variant = render_commented_variant()
        (web,) = variant["services"]
        (db,) = variant["databases"]
        url = {e["key"]: e for e in web["envVars"]}["TSREVEL_DATABASE_URL"]
        assert url["fromDatabase"] == {"name": db["name"], "property": "connectionString"}
        assert web["numInstances"] >= 2 and "disk" not in web
        assert web["startCommand"] == self.web()["startCommand"] and web["healthCheckPath"] == "/ready"


class TestSystemdUnit:
    unit = systemd_unit()

    def test_exec_start_serves_with_the_port_from_the_environment(self) -> None:
        service = self.unit["Service"]
        args = serve_args(service["ExecStart"])
        assert service["ExecStart"].split()[0].startswith("/")  # systemd wants an absolute path
        assert option(args, "--port") == "${PORT}" and "Environment" in service and "PORT=" in service["Environment"]
        assert option(args, "--host") in ("127.0.0.1", "0.0.0.0")

    def test_it_runs_unprivileged_restarts_on_failure_and_drains_on_stop(self) -> None:
        service = self.unit["Service"]
        assert service["User"] not in ("root", "0")
        assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
        assert int(service["TimeoutStopSec"]) >= 30
        assert service["StateDirectory"] == "tsrevel" and service["ReadWritePaths"] == "/var/lib/tsrevel"
        assert self.unit["Install"]["WantedBy"] == "multi-user.target"

    def test_the_example_environment_file_is_a_valid_configuration_in_the_state_directory(self) -> None:
        env = read_env_file(ROOT / "deploy" / "tsrevel.env.example")
        assert set(env) <= TSREVEL_VARIABLES
        settings = Settings.from_env({**env, "TSREVEL_MAPPING_FILE": str(ROOT / "examples" / "mapping.toml")})
        assert settings.database_url == "sqlite:////var/lib/tsrevel/tsrevel.db"
