"""Load and faults against real containers: many runs at once, a container killed mid-run,
and schemathesis at full strength against each processor's own /openapi.json.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import LocalAdapter
from pytest_theory.fuzz import check_run_answer, check_stream_answer, fuzz_endpoint
from pytest_theory.registry import Registry
from tests.conftest import FIXTURES, RELIABILITY, our_containers
from tests.reliability.conftest import INPUTS, REFS, Target, boot
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]

CONCURRENT_RUNS = 200
FUZZ_EXAMPLES = 1000


@pytest.fixture(scope="module")
def local_target(
    docker_client: Any, local_adapter: LocalAdapter, tmp_path_factory: pytest.TempPathFactory
) -> Target:
    return boot(local_adapter, "llm/litellm@1", tmp_path_factory.mktemp("load-world"))


def test_two_hundred_concurrent_runs_on_one_container(
    local_target: Target, docker_client: Any
) -> None:
    spec = local_target.spec
    before = our_containers(docker_client)

    def run(i: int) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        envelope = local_target.adapter.invoke(
            processor_ref=str(spec.ref),
            mode="mock",
            inputs_json=INPUTS[str(spec.ref)],
            write_prefix="/artifacts/load/{execution_id}/",
            execution_id=f"load-{i}",
            registry_snapshot=spec.snapshot(),
            adapter_opts={"world_root": str(local_target.world)},
        )
        return envelope, (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        results = list(pool.map(run, range(CONCURRENT_RUNS)))
    failed = [e for e, _ in results if e["status"] != "success"]
    assert not failed, failed[:3]
    assert len({e["index_path"] for e, _ in results}) == CONCURRENT_RUNS
    assert our_containers(docker_client) == before, "all runs shared the one container"
    latencies = sorted(ms for _, ms in results)
    cuts = statistics.quantiles(latencies, n=100)
    RELIABILITY["concurrent runs succeeded"] += len(results)
    RELIABILITY["concurrent run p50 ms"] = round(cuts[49])
    RELIABILITY["concurrent run p99 ms"] = round(cuts[98])


@pytest.fixture
def chaos(docker_client: Any, tmp_path: Path) -> Iterator[tuple[LocalAdapter, Any]]:
    adapter = LocalAdapter(world_root=tmp_path)
    spec = Registry.discover([FIXTURES / "faults"]).get_spec("fault/chaos@1")
    yield adapter, spec
    adapter.close()


@pytest.mark.fault
@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_a_container_killed_mid_run_is_a_canonical_error(
    chaos: tuple[LocalAdapter, Any], stream: bool
) -> None:
    adapter, spec = chaos
    handle = adapter.acquire(spec)
    result: dict[str, Any] = {}

    def hang() -> None:
        result["envelope"] = adapter.invoke(
            processor_ref=str(spec.ref),
            mode="mock",
            inputs_json={"schema": "v1", "params": {"behave": "hang"}},
            write_prefix="/artifacts/kill/{execution_id}/",
            execution_id="kill-1",
            registry_snapshot=spec.snapshot(),
            stream=stream,
        )

    caller = threading.Thread(target=hang)
    caller.start()
    wait_for(lambda: "chaos.behave" in handle.stderr(), timeout_s=30, what="the run started")
    assert handle.container.container is not None
    handle.container.container.kill()
    caller.join(60)
    assert not caller.is_alive(), "the caller still waits on a dead container"
    envelope = result["envelope"]
    assert envelope["error"]["code"] == "ERR_ADAPTER_INVOCATION", envelope
    assert envelope["execution_id"] == "kill-1"


@pytest.fixture(scope="module", params=REFS)
def fuzz_target(
    request: pytest.FixtureRequest,
    docker_client: Any,
    local_adapter: LocalAdapter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Target:
    return boot(local_adapter, request.param, tmp_path_factory.mktemp("fuzz-world"))


@pytest.mark.parametrize(
    ("endpoint", "check"),
    [("/run", check_run_answer), ("/run-stream", check_stream_answer)],
    ids=["run", "run-stream"],
)
def test_schemathesis_at_full_strength(
    fuzz_target: Target, endpoint: str, check: Any, pytestconfig: pytest.Config
) -> None:
    """The suite's own fuzz checks, with FUZZ_EXAMPLES cases instead of the default 50."""
    cache = getattr(pytestconfig, "cache", None)
    sent = fuzz_endpoint(fuzz_target.handle, "POST", endpoint, FUZZ_EXAMPLES, check, cache)
    RELIABILITY["schemathesis cases sent"] += sent
    assert sent >= FUZZ_EXAMPLES * 0.9, f"only {sent} distinct cases were generated"
