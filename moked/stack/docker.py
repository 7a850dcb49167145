"""nginx for Docker: the same template as the native stack, rendered for containers.

`moked render-nginx --docker` runs at container start (the compose `nginx-config`
one-shot service, from the application image) and once at image build (a default baked
into the nginx image). It renders `nginx/nginx.conf.template` with container paths and
upstreams, plus two Docker-only snippets under `nginx/docker/`: TLS settings for the
https server and the extra servers (port 80: ACME and redirect; an internal status
server for the exporter and the healthcheck). Non-root nginx listens on 8080/8443/8081;
compose publishes 80 and 443.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from moked.settings import Settings, default_port
from moked.stack.config import REPO_ROOT, fallback_twiml, render_nginx

TEMPLATE_DIR = REPO_ROOT / "nginx"
SNIPPETS = ("tls.conf", "servers.conf")
"""Docker-only snippet templates in nginx/docker/, rendered next to nginx.conf."""
_PLACEHOLDER = re.compile(r"\$\{[A-Z0-9_]+\}")


@dataclass(frozen=True, slots=True)
class DockerNginx:
    """Where things are inside the nginx container (overridable for tests)."""

    conf_dir: Path = Path("/etc/nginx/rendered")
    """Where nginx finds the rendered files (the `nginx-config` volume, read-only)."""
    run_dir: Path = Path("/tmp/nginx")  # noqa: S108 - the container's own tmp
    log_dir: Path = Path("/var/log/nginx")
    """access.log and error.log: the image links them to stdout/stderr (`docker logs`).
    The fallback log stays a file (NGINX_FALLBACK_LOG) for the reconciler to replay."""
    tls_dir: Path = Path("/etc/nginx/tls")
    acme_dir: Path = Path("/var/www/acme")
    https_port: int = 8443
    http_port: int = 8080
    status_port: int = 8081
    webhooks_upstream: str = f"webhooks:{default_port('webhooks_port')}"
    """The compose service and the port its container listens on (the setting's default)."""
    crm_upstream: str = f"crm-ui:{default_port('crm_port')}"
    status_allow: tuple[str, ...] = ("127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    """Who may read stub_status on the internal port: loopback and private networks."""


def docker_nginx_variables(settings: Settings, docker: DockerNginx) -> dict[str, str]:
    out = docker.conf_dir
    allow = "\n".join(f"            allow {net};" for net in docker.status_allow)
    return {
        "NGINX_USER_DIRECTIVE": "",  # the image runs nginx as its own non-root user
        "NGINX_RUN_DIR": str(docker.run_dir),
        "NGINX_LOG_DIR": str(docker.log_dir),
        "NGINX_FALLBACK_LOG": str(settings.nginx_fallback_log),
        "NGINX_LISTEN": f"{docker.https_port} ssl",
        "WEBHOOKS_UPSTREAM": docker.webhooks_upstream,
        "CRM_UPSTREAM": docker.crm_upstream,
        "GREETINGS_DIR": str(settings.greetings_dir),
        "RECORDINGS_DIR": str(settings.recordings_dir),
        "NGINX_HTTP_INCLUDES": f"include {out / 'servers.conf'};",
        "NGINX_SERVER_INCLUDES": f"include {out / 'tls.conf'};",
        "TLS_DIR": str(docker.tls_dir),
        "ACME_DIR": str(docker.acme_dir),
        "HTTP_LISTEN": str(docker.http_port),
        "STATUS_LISTEN": str(docker.status_port),
        "STATUS_ALLOW": allow.lstrip(),
        **fallback_twiml(settings),
    }


def render_docker_nginx(
    settings: Settings, docker: DockerNginx, template_dir: Path = TEMPLATE_DIR
) -> dict[str, str]:
    """File name → rendered text, for nginx.conf and the Docker snippets."""
    variables = docker_nginx_variables(settings, docker)
    files = {"nginx.conf": (template_dir / "nginx.conf.template").read_text(encoding="utf-8")}
    for name in SNIPPETS:
        files[name] = (template_dir / "docker" / f"{name}.template").read_text(encoding="utf-8")
    return {name: _render(text, variables) for name, text in files.items()}


def _render(template: str, variables: dict[str, str]) -> str:
    # render_nginx only checks the names it was given; every name here is for some file.
    used = {name: value for name, value in variables.items() if "${" + name + "}" in template}
    rendered = render_nginx(template, used)
    for line in rendered.splitlines():
        left = _PLACEHOLDER.search(line.split("#", 1)[0])
        if left:
            raise ValueError(f"unrendered nginx variable {left.group(0)}")
    return rendered


def write_docker_nginx(
    settings: Settings,
    docker: DockerNginx,
    output_dir: Path | None = None,
    template_dir: Path = TEMPLATE_DIR,
) -> list[Path]:
    """Write the files to `output_dir` (default: where nginx reads them, `conf_dir`)."""
    target = output_dir or docker.conf_dir
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_docker_nginx(settings, docker, template_dir).items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    return written
