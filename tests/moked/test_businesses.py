"""Finding a business by id or name, as the CLI and the CRM do."""

from __future__ import annotations

from moked.businesses import find_business
from moked.db.session import session_scope
from tests.harness import StackUnderTest


def test_an_id_finds_that_business_even_when_another_is_named_like_it(
    stack: StackUnderTest, make_business
) -> None:
    first = make_business()
    named_like_it = make_business(name=str(first.id))
    unused_id = str(10_000_000 + first.id)
    only_a_name = make_business(name=unused_id)
    with session_scope() as session:
        found = find_business(session, str(first.id))
        assert found is not None and found.id == first.id
        by_name = find_business(session, unused_id)
        assert by_name is not None and by_name.id == only_a_name.id
        assert named_like_it.id != first.id
