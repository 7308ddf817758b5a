"""Each recipe's entry command, run as a process with PORT set, reaches /ready; the image's HEALTHCHECK agrees.

Without a container runtime on this machine (no daemon; the base image's registry is out of reach),
this is how the Dockerfile's CMD and HEALTHCHECK, Render's startCommand and the systemd ExecStart are
proven: the exact command line, with the environment the recipe sets (the database moved to a
temporary directory). The Dockerfile's command binds 0.0.0.0 by contract; it runs for seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deploy_files import ROOT, dockerfile, dockerfile_env, exec_form, expand_systemd, render, systemd_unit
from tests.e2e.conftest import free_port, wait_until

pytestmark = pytest.mark.e2e

BIN = str(Path(sys.executable).parent)  # where the `tsrevel` console script is installed


def base_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSREVEL_", "REVEL_", "SENDGRID_", "TRIPLESEAT_", "EMAIL_", "HOST"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PORT=str(port),
        TSREVEL_DATABASE_URL=f"sqlite:///{tmp_path / 'var' / 'tsrevel.db'}",
        TSREVEL_MAPPING_FILE=str(ROOT / "examples" / "mapping.toml"),
        LOG_FORMAT="json",
    )
    (tmp_path / "var").mkdir(exist_ok=True)
    return env


def run_until_ready(argv: list[str], env: dict[str, str], port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = open(tmp_path / "service.log", "wb")  # noqa: SIM115 - closed with the process
    # Its own process group: a command run through `sh -c` is stopped with every process it started.
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(
            lambda: process.poll() is not None or httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200,
            timeout_s=30, what=f"/ready on port {port} from {argv}",
        )
    except BaseException:
        end_group(process)
        raise
    assert process.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
    return process


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a zombie leader still counts as the group
        return True
    return True


def end_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever of the command's process group is left (the test started it, the test stops it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the command's whole process group; its exit code once every process in it has ended."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        code = process.wait(timeout=20)
        wait_until(lambda: not _group_alive(process.pid), timeout_s=20, what=f"every process of {process.args} to end")
        return code
    finally:
        if _group_alive(process.pid):
            end_group(process)


class TestDockerfileCommand:
    def test_the_image_command_serves_on_port_and_the_healthcheck_passes_then_fails_when_stopped(self, tmp_path: Path) -> None:
        ins = dockerfile()
        cmd = exec_form(next(i.args for i in reversed(ins) if i.keyword == "CMD"))
        check = exec_form(next(i.args for i in ins if i.keyword == "HEALTHCHECK").split("CMD", 1)[1].strip())
        port = free_port()
        image_env = {k: v for k, v in dockerfile_env(ins).items() if k not in ("TSREVEL_DATABASE_URL", "TSREVEL_MAPPING_FILE")}
        env = {**base_env(tmp_path, port), **image_env, "PORT": str(port)}
        process = run_until_ready(cmd, env, port, tmp_path)
        try:
            assert subprocess.run([sys.executable, *check[1:]], env=env, timeout=15).returncode == 0
            # `exec`: the shell is replaced, so the signal reaches tsrevel itself, which drains and exits 0.
            assert stop(process) == 0
        finally:
            if process.poll() is None or _group_alive(process.pid):
                end_group(process)
        assert subprocess.run([sys.executable, *check[1:]], env=env, timeout=15, capture_output=True).returncode != 0

    def test_without_port_the_image_default_8080_is_used_in_the_command(self) -> None:
        cmd = exec_form(next(i.args for i in reversed(dockerfile()) if i.keyword == "CMD"))
        shown = subprocess.run(["sh", "-c", cmd[2].replace("exec tsrevel", "echo tsrevel", 1)], env={"PATH": os.environ["PATH"]},
                               capture_output=True, text=True, check=True).stdout.split()
        assert shown == ["tsrevel", "serve", "--host", "0.0.0.0", "--port", "8080"]


class TestRenderStartCommand:
    def test_render_start_command_serves_on_the_port_render_sets(self, tmp_path: Path) -> None:
        (web,) = render()["services"]
        port = free_port()
        process = run_until_ready(["sh", "-c", web["startCommand"]], base_env(tmp_path, port), port, tmp_path)
        assert httpx.get(f"http://127.0.0.1:{port}{web['healthCheckPath']}", timeout=5).status_code == 200
        assert stop(process) in (0, -signal.SIGTERM)  # sh may be the process that got the signal


class TestSystemdExecStart:
    def test_exec_start_with_systemds_port_expansion_serves(self, tmp_path: Path) -> None:
        service = systemd_unit()["Service"]
        port = free_port()
        env = base_env(tmp_path, port)
        command = expand_systemd(service["ExecStart"], {"PORT": str(port)})
        argv = command.split()
        assert argv[0] == "/opt/tsrevel/.venv/bin/tsrevel"
        argv[0] = str(Path(BIN) / "tsrevel")  # the unit's venv is this checkout's venv here
        process = run_until_ready(argv, env, port, tmp_path)
        assert stop(process) == 0
