"""schemathesis the way its users run it, against the processor pytest-theory boots.

``theory_schema`` is the processor's ``/openapi.json`` as a schemathesis schema, bound
to the booted container and read with pytest-theory's shipped configuration (SPEC.md's
choices where they differ from schemathesis' defaults). Every default check applies:

    pytest examples/test_schemathesis.py

The same schema and configuration from schemathesis' own CLI, against a container the
harness started and kept (``--theory-keep`` prints its URL and the ``st run`` line)::

    pytest examples/test_schemathesis.py --theory-keep
    st --config-file <printed path>/schemathesis.toml run <printed URL>/openapi.json
"""

from __future__ import annotations

import pytest
import schemathesis

schema = schemathesis.pytest.from_fixture("theory_schema")


@schema.parametrize()
@pytest.mark.theory(ref=["llm/litellm@1", "replicate/generic@1"])
def test_api(case):
    case.call_and_validate()
