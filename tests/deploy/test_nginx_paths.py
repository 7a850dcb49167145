"""Issue 13 item 6: internal endpoints are closed from outside however the path is spelled,
and neither app answers a redirect built from the Host header for a doubled slash.

nginx matches locations on the decoded, slash-merged URI while the apps get the request
line as sent and decode it themselves, so every request here goes out byte for byte
(http.client: requests and urllib3 would normalise dot segments)."""

from __future__ import annotations

import http.client
from urllib.parse import urlencode, urlsplit

import pytest

from moked.statuses import Endpoint
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid

INTERNAL_SPELLINGS = [
    "/metrics",
    "/metrics/",
    "/metrics%2F",
    "/metrics%2f",
    "//metrics",
    "/metrics//",
    "//metrics//",
    "/%6detrics",
    "/METRICS",
    "/Metrics/",
    "/metrics/.",
    "/./metrics",
    "/calls/../metrics",
    "/webhook/..%2Fmetrics",
    "/metrics?format=text",
    "/metrics/?x=1",
    "/readyz",
    "/readyz/",
    "/readyz%2F",
    "//readyz",
    "/internal/recordings/",
    "/internal/elsewhere",
    "/INTERNAL/recordings/x.mp3",
    "/nginx_status/",
]


def raw_request(
    stack: StackUnderTest,
    method: str,
    target: str,
    *,
    body: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """The request line exactly as given; (status, lower-cased headers, body)."""
    parts = urlsplit(stack.base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        sent = {
            "Host": parts.netloc,
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        }
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body.encode())))
        connection.endheaders(body.encode())
        response = connection.getresponse()
        answer = {k.lower(): v for k, v in response.getheaders()}
        return response.status, answer, response.read()
    finally:
        connection.close()


def test_the_apps_do_serve_metrics_on_their_loopback_ports(stack: StackUnderTest) -> None:
    """What the spellings below must not reach (so a 404 there means closed, not absent)."""
    for port in (stack.settings.crm_port, stack.settings.webhooks_port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/metrics/")
        response = connection.getresponse()
        assert response.status == 200 and b"# HELP" in response.read()
        connection.close()


@pytest.mark.parametrize("target", INTERNAL_SPELLINGS)
def test_internal_paths_are_404_from_outside_however_spelled(
    stack: StackUnderTest, target: str
) -> None:
    status, _, body = raw_request(stack, "GET", target)

    assert status == 404, f"{target} answered {status}"
    assert b"# HELP" not in body and b"ready" not in body


@pytest.mark.parametrize(
    "target",
    [
        "//webhook//incoming_call",
        "/webhook//incoming_call",
        "//webhook/incoming_call",
        "/webhook/incoming_call%2F",
        "//webhook//handle_recording",
        "//webhook//recording_status",
        "/webhook",
    ],
)
def test_a_webhook_is_never_answered_with_a_redirect(stack: StackUnderTest, target: str) -> None:
    """Werkzeug merged the slashes and answered 308 to http://<Host header>/webhook/...:
    Twilio does not follow redirects (11200) and the Host is the caller's to choose."""
    params = call_params(new_call_sid(), "+97235550199")
    body = urlencode(params)

    status, headers, _ = raw_request(
        stack, "POST", target, body=body, headers={"Host": "attacker.example"}
    )

    assert not 300 <= status < 400, f"{target} answered {status} to {headers.get('location')}"
    assert "location" not in headers
    assert status < 500
    assert headers["content-type"].split(";")[0] in ("text/plain", "text/xml", "text/html")


@pytest.mark.parametrize("target", ["//calls//CA00", "/calls//CA00/live", "//inbox//rows"])
def test_the_crm_never_redirects_to_the_host_header(stack: StackUnderTest, target: str) -> None:
    """The same 308 from the CRM: a link to it sent staff to any host the link named."""
    status, headers, _ = raw_request(stack, "GET", target, headers={"Host": "attacker.example"})

    assert not 300 <= status < 400, f"{target} answered {status} to {headers.get('location')}"


def test_the_webhook_itself_still_answers(stack: StackUnderTest) -> None:
    """The closed spellings are not the real path: Twilio's own URL is untouched."""
    response = stack.post(Endpoint.CALL_STATUS.path, call_params(new_call_sid(), "+97235550199"))
    assert response.status_code == 200
