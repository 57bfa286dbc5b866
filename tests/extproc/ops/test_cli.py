"""The ``aigateway`` command as an operator meets it: help for every flag, ``--version``,
one-line errors of our own, and credentials named at start."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigateway import __version__
from aigateway.extproc.ops.cli import COMMANDS, build_parser
from tests.e2e.stack import AIGATEWAY, free_port


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_has_a_description_and_every_flag_help_and_its_default() -> None:
    assert set(subcommands()) == set(COMMANDS)
    for name, sub in subcommands().items():
        assert sub.description and len(sub.description) > 40, name
        usage = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in usage.split(action.option_strings[-1], 1)[1], (
                    name,
                    action.option_strings,
                )


def test_help_shows_the_defaults_of_the_contract() -> None:
    serve = subcommands()["serve"].format_help()
    assert "(default: 127.0.0.1:1063)" in serve
    assert "(default: :9190)" in serve
    up = " ".join(subcommands()["up"].format_help().split())
    for default in ("127.0.0.1:10000", "127.0.0.1:9901", "127.0.0.1:8000"):
        assert f"(default: {default})" in up


def test_version() -> None:
    shown = subprocess.run(
        [*AIGATEWAY, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert shown.stdout.strip() == f"aigateway {__version__}"
    assert __version__ != "0+unknown"  # the installed distribution's version


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_is_one_line_of_ours(tmp_path: Path, taken_port: int) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "backends: [{name: b, schema: openai, endpoint: 'http://127.0.0.1:1'}]\n"
        "models: [{name: m, backend: b}]\n"
    )
    served = subprocess.run(
        [
            *AIGATEWAY,
            "serve",
            "--config",
            str(config),
            "--extproc-addr",
            f"127.0.0.1:{taken_port}",
            "--metrics-addr",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 1
    # No line from grpc's C core (E1201 ... add_port.cc), no traceback: ours alone.
    assert served.stderr == (
        f"aigateway: cannot listen for ext_proc on 127.0.0.1:{taken_port}: Address already in use\n"
    )


BEDROCK_WITHOUT_AUTH = """\
backends:
  - {name: bedrock, schema: aws-bedrock, endpoint: "https://bedrock-runtime.eu-west-1.amazonaws.com"}
  - {name: local, schema: openai, endpoint: "http://127.0.0.1:8000"}
models:
  - {name: claude, backend: bedrock, backend_model: anthropic.claude-3-5-sonnet-20240620-v1:0}
  - {name: phi4, backend: local}
"""


def no_aws_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def test_bedrock_without_auth_and_without_credentials_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(BEDROCK_WITHOUT_AUTH)
    checked = subprocess.run(
        [*AIGATEWAY, "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=no_aws_env(tmp_path),
    )
    assert checked.returncode == 2
    assert checked.stderr.startswith("aigateway: invalid config: backends[0].auth (not set):")
    assert "no AWS credentials found" in checked.stderr
    assert len(checked.stderr.splitlines()) == 1


def test_a_backend_without_auth_says_which_credentials_it_uses(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(BEDROCK_WITHOUT_AUTH)
    env = no_aws_env(tmp_path)
    env.update(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret-example")
    checked = subprocess.run(
        [*AIGATEWAY, "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    assert (
        "backend bedrock: AWS SigV4 with botocore's default credential chain (found: env),"
        " region eu-west-1"
    ) in checked.stdout
    assert "backend local: no credentials (the backend has no auth:)" in checked.stdout
    assert "secret-example" not in checked.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--gemini-api-key-env", "AIGW_TEST_UNSET"],
            "--gemini-api-key-env: AIGW_TEST_UNSET is not set",
        ),
        (
            ["--gcp-service-account", "/nonexistent/sa.json"],
            "--gcp-service-account /nonexistent/sa.json:",
        ),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-cert and --tls-key go together"),
        (["--path-prefix", "api/"], "path_prefix must start with / and not end with one"),
    ],
)
def test_mock_backend_refuses_bad_flags_in_one_line(flags: list[str], message: str) -> None:
    ran = subprocess.run(
        [*AIGATEWAY, "mock-backend", "--listen", f"127.0.0.1:{free_port()}", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2
    assert ran.stderr.startswith("aigateway: " + message)
    assert len(ran.stderr.splitlines()) == 1


def test_the_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).resolve().parents[3]
    # Built from a copy: setuptools leaves a build/ folder in the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(
        root,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "docs/api"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("aigateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"aigateway"}
    for module in (
        "aigateway/__main__.py",
        "aigateway/extproc/framework/processor.py",
        "aigateway/extproc/gateway/app.py",
        "aigateway/extproc/ops/cli/serve.py",
        "aigateway/mock_backend/knobs.py",
        "aigateway/instrumentation/instrumented.py",
        "aigateway/translators/client_apis/chat/stream.py",
        "aigateway/translators/backends/bedrock.py",
        "aigateway/translators/wire/eventstream.py",
        "aigateway/translators/matrix.py",
        "aigateway/py.typed",
    ):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "aigateway = aigateway.extproc.ops.cli:main" in (
        zipfile.ZipFile(wheel).read(entry_points).decode()
    )
