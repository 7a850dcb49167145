"""The nginx template rendered for Docker: `nginx -t`, then served for real over TLS.

The container's paths and ports are replaced by temporary ones; everything else is what
`moked render-nginx --docker` writes in the `nginx-config` step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from moked.doctor import Doctor, Status
from moked.greetings import synthesize_mp3
from moked.settings import Settings, default_port
from moked.stack.docker import DockerNginx, render_docker_nginx, write_docker_nginx
from tests.harness import StackUnderTest, free_port, make_state_dir


@dataclass
class DockerNginxUnderTest:
    docker: DockerNginx
    settings: Settings
    cert: Path

    @property
    def https(self) -> str:
        return f"https://localhost:{self.docker.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.docker.http_port}"

    @property
    def status(self) -> str:
        return f"http://127.0.0.1:{self.docker.status_port}"


def make_certificate(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(directory / "privkey.pem"),
            "-out", str(directory / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory / "fullchain.pem"


def docker_layout(stack: StackUnderTest, base: Path) -> tuple[DockerNginx, Settings]:
    docker = DockerNginx(
        conf_dir=base / "rendered",
        run_dir=base / "run",
        log_dir=base / "log",
        tls_dir=base / "tls",
        acme_dir=base / "acme",
        https_port=free_port(),
        http_port=free_port(),
        status_port=free_port(),
        webhooks_upstream=f"127.0.0.1:{stack.settings.webhooks_port}",
        crm_upstream=f"127.0.0.1:{stack.settings.crm_port}",
    )
    settings = stack.settings.model_copy(
        update={"nginx_fallback_log": base / "log" / "twilio_fallback.log"}
    )
    return docker, settings


@pytest.fixture(scope="module")
def docker_nginx(stack: StackUnderTest) -> Iterator[DockerNginxUnderTest]:
    base = make_state_dir("moked-docker-nginx-")
    docker, settings = docker_layout(stack, base)
    cert = make_certificate(docker.tls_dir)
    for directory in (docker.run_dir, base / "log", docker.acme_dir / ".well-known/acme-challenge"):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    if os.geteuid() == 0:  # workers run as nobody, as natively
        shutil.chown(docker.run_dir, "nobody")
    (docker.acme_dir / ".well-known/acme-challenge/token123").write_text("token123.key")
    conf = write_docker_nginx(settings, docker)[0]
    process = subprocess.Popen(
        ["nginx", "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "log" / "stderr.log", "w"),  # noqa: SIM115
    )
    under_test = DockerNginxUnderTest(docker=docker, settings=settings, cert=cert)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(under_test.status + "/livez", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "log" / "stderr.log").read_text()) from None
                time.sleep(0.2)
        yield under_test
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def test_renders_every_file_with_nothing_left_over(stack: StackUnderTest, tmp_path: Path) -> None:
    docker, settings = docker_layout(stack, tmp_path)
    files = render_docker_nginx(settings, docker)
    assert set(files) == {"nginx.conf", "tls.conf", "servers.conf"}
    conf = files["nginx.conf"]
    assert f"listen {docker.https_port} ssl;" in conf
    assert f"include {docker.conf_dir / 'tls.conf'};" in conf
    assert f"include {docker.conf_dir / 'servers.conf'};" in conf
    assert "<Response>" in conf and "X-Moked-Fallback" in conf
    assert f"ssl_certificate {docker.tls_dir}/fullchain.pem;" in files["tls.conf"]
    assert "TLSv1.2 TLSv1.3" in files["tls.conf"]


def test_container_defaults(stack: StackUnderTest) -> None:
    files = render_docker_nginx(stack.settings, DockerNginx())
    conf = files["nginx.conf"]
    webhooks, crm = default_port("webhooks_port"), default_port("crm_port")
    assert f"server webhooks:{webhooks}" in conf and f"server crm-ui:{crm}" in conf
    assert "listen 8443 ssl;" in conf and "include /etc/nginx/rendered/tls.conf;" in conf
    assert "user nobody" not in conf  # the image runs nginx as its own non-root user
    assert "listen 8080 default_server;" in files["servers.conf"]
    assert "ssl_certificate /etc/nginx/tls/fullchain.pem;" in files["tls.conf"]


def test_nginx_t_accepts_it(docker_nginx: DockerNginxUnderTest) -> None:
    conf = docker_nginx.docker.conf_dir / "nginx.conf"
    result = subprocess.run(
        ["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_https_serves_twilio(docker_nginx: DockerNginxUnderTest, make_business) -> None:  # type: ignore[no-untyped-def]
    verify = str(docker_nginx.cert)
    fallback = requests.post(
        docker_nginx.https + "/twiml/fallback/incoming_call",
        data={"ErrorCode": "11200"},
        verify=verify,
        timeout=5,
    )
    assert fallback.status_code == 200
    assert fallback.headers["Content-Type"].startswith("text/xml")
    assert fallback.text.startswith("<?xml") and "<Record" in fallback.text

    business = make_business(greeting_mp3=synthesize_mp3("shalom", "he"))
    greeting = requests.get(
        docker_nginx.https + "/server/static/voice_responses/" + business.greeting_file,
        verify=verify,
        timeout=5,
    )
    assert greeting.status_code == 200 and greeting.headers["Content-Type"] == "audio/mpeg"

    health = requests.get(docker_nginx.https + "/healthz", verify=verify, timeout=5)
    assert health.status_code == 200  # proxied to the webhooks service over the upstream


def test_http_port_redirects_browsers_and_serves_acme(docker_nginx: DockerNginxUnderTest) -> None:
    redirect = requests.get(docker_nginx.http + "/some/page?x=1", allow_redirects=False, timeout=5)
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == "https://127.0.0.1/some/page?x=1"
    challenge = requests.get(docker_nginx.http + "/.well-known/acme-challenge/token123", timeout=5)
    assert challenge.status_code == 200 and challenge.text == "token123.key"


def test_internal_status_server(docker_nginx: DockerNginxUnderTest) -> None:
    status = requests.get(docker_nginx.status + "/nginx_status", timeout=5)
    assert status.status_code == 200 and "Active connections" in status.text
    assert requests.get(docker_nginx.status + "/livez", timeout=5).text == "ok"


def test_doctor_checks_the_certificate(
    docker_nginx: DockerNginxUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = docker_nginx.settings.model_copy(update={"public_host": docker_nginx.https})
    untrusted = Doctor(settings, businesses=list).run(only=("tls", "fallback"))
    tls = untrusted.result("tls")
    assert tls.status is Status.FAIL and "does not verify" in tls.summary
    assert untrusted.result("fallback").status is Status.FAIL  # requests refuses it too

    monkeypatch.setenv("SSL_CERT_FILE", str(docker_nginx.cert))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(docker_nginx.cert))
    trusted = Doctor(settings, businesses=list).run(only=("tls", "fallback"))
    assert trusted.result("tls").status is Status.PASS, trusted.result("tls")
    assert "localhost: certificate valid until" in trusted.result("tls").summary
    assert trusted.result("fallback").status is Status.PASS


def test_doctor_names_a_redirect(docker_nginx: DockerNginxUnderTest) -> None:
    settings = docker_nginx.settings.model_copy(update={"public_host": docker_nginx.http})
    report = Doctor(settings, businesses=list).run(only=("fallback",))
    result = report.result("fallback")
    assert result.status is Status.FAIL
    assert "redirects (301 to https://127.0.0.1/twiml/fallback/incoming_call)" in result.summary


def test_the_compose_step_command_renders(stack: StackUnderTest, tmp_path: Path) -> None:
    """`moked render-nginx --docker` as the nginx-config service runs it, then `nginx -t`."""
    from moked import cli

    docker, _ = docker_layout(stack, tmp_path)
    make_certificate(docker.tls_dir)
    docker.run_dir.mkdir()
    code = cli.main(
        [
            "render-nginx",
            "--docker",
            f"--conf-dir={tmp_path / 'rendered'}",
            f"--output-dir={tmp_path / 'rendered'}",
            f"--webhooks-upstream=127.0.0.1:{stack.settings.webhooks_port}",
            f"--crm-upstream=127.0.0.1:{stack.settings.crm_port}",
        ]
    )
    assert code == 0
    conf = tmp_path / "rendered" / "nginx.conf"
    text = conf.read_text()
    # The CLI keeps the container's own TLS and run paths; point them at the test's.
    text = text.replace("/tmp/nginx", str(docker.run_dir)).replace(
        "/var/log/nginx", str(tmp_path / "log")
    )
    (tmp_path / "log").mkdir()
    conf.write_text(text)
    tls = (tmp_path / "rendered" / "tls.conf").read_text()
    (tmp_path / "rendered" / "tls.conf").write_text(
        tls.replace("/etc/nginx/tls", str(docker.tls_dir))
    )
    servers = (tmp_path / "rendered" / "servers.conf").read_text()
    assert "root /var/www/acme;" in servers
    result = subprocess.run(
        ["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
