"""Fixtures for the deployment tests: the Twilio API mock (installed on first use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moked.db.models import Business
from tests.deploy.twilio_mock import EXAMPLE_BUSINESS, EXAMPLE_NUMBER, TwilioMock, running_mock


@pytest.fixture(scope="session")
def twilio_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwilioMock]:
    with running_mock(tmp_path_factory.mktemp("twilio-mock")) as mock:
        yield mock


@pytest.fixture
def example_business(make_business) -> Business:  # type: ignore[no-untyped-def]
    """The business owning the number Twilio's spec examples list (what Prism answers)."""
    business: Business = make_business(name=EXAMPLE_BUSINESS, numbers=(EXAMPLE_NUMBER,))
    return business
