"""pytest-theory's benchmarks, each against a floor measured in the same run.

    .venv/bin/python -m bench.run [--quick] [--write-results]

Prints a table, writes ``bench/out/results.json``; ``--write-results`` also
rewrites ``bench/RESULTS.md`` (with the reliability counts of
``tests/reliability``, run here). ``--quick`` skips the builds from nothing and
the reliability suite. Needs ``scripts/setup`` to have run (images built).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker

from pytest_theory.adapters import LocalAdapter
from pytest_theory.adapters.base import invoke_kwargs
from pytest_theory.adapters.containers import ProcessorContainer, managed_containers
from pytest_theory.adapters.http import wait_healthy
from pytest_theory.contracts.hashing import cid_of_file
from pytest_theory.images import build_image
from pytest_theory.registry import Registry

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
PYTEST = [sys.executable, "-m", "pytest", "-q"]  # with its cache, as a user runs it
#: The suite as a user runs it: without this repository's own test conftest.
SUITE = [*PYTEST, "--noconftest"]
REF = "llm/litellm@1"
INPUTS = {
    "schema": "v1",
    "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
}


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    goal: str = ""
    met: bool | None = None
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.floor if self.floor else None


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[p - 1]


def pytest_suite(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [*SUITE, "--theory-ref", REF, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the suite failed ({' '.join(args)}):\n{done.stdout[-3000:]}")


def ours(client: docker.DockerClient) -> list[Any]:
    return managed_containers(client)


def payload(execution_id: str) -> dict[str, Any]:
    return {
        "schema": "v1",
        "execution_id": execution_id,
        "ref": REF,
        "mode": "mock",
        "inputs": INPUTS,
        "write_prefix": "/artifacts/bench/{execution_id}/",
    }


# -- 1. the warm suite against a docker-run floor -----------------------------------------


def suite_footprint(client: docker.DockerClient) -> tuple[int, int]:
    """(containers, HTTP requests) of one warm suite run, read off the containers it kept."""
    before = {c.id for c in ours(client)}
    pytest_suite("--theory-keep")
    kept = [c for c in ours(client) if c.id not in before]
    requests = sum(access_lines(c.logs(stdout=False, stderr=True).decode()) for c in kept)
    for container in kept:
        container.remove(force=True, v=True)
    return len(kept), requests


def access_lines(stderr: str) -> int:
    """How many requests a processor served: its NDJSON ``http.access`` lines."""
    return sum(
        json.loads(line).get("event") == "http.access"
        for line in stderr.split("\n")
        if line.startswith("{")
    )


def docker_run_floor(image: str, digest: str, containers: int, requests: int) -> float:
    """``bench/floor.py``, a plain script (``docker run``, poll, raw requests, ``docker rm``), timed."""
    script = [sys.executable, str(REPO / "bench" / "floor.py"), image, digest]
    return timed(lambda: subprocess.run([*script, str(containers), str(requests)], check=True))


def bench_warm_suite(client: docker.DockerClient, repeats: int) -> Figure:
    pytest_suite()  # warm: images built, imports cached
    containers, requests = suite_footprint(client)
    suite = statistics.median(timed(pytest_suite) for _ in range(repeats))
    image = build_image(Registry.discover().get_spec(REF), client)
    floor = statistics.median(
        docker_run_floor(image.reference, image.digest, containers, requests)
        for _ in range(repeats)
    )
    return Figure(
        "warm `pytest --theory-ref llm/litellm@1`", suite, "s", floor,
        f"docker run + {requests} raw requests over {containers} containers + docker rm",
        "<= 1.5x floor", suite <= 1.5 * floor,
    )  # fmt: skip


def bench_examples(repeats: int) -> Figure:
    """The suite on a processor whose registry has no ``inputs.examples`` (its payload is
    generated once from the schema) against the same processor with examples."""
    from tests.plugin.conftest import make_foreign

    with tempfile.TemporaryDirectory(prefix="theory-bench-") as tmp:
        root = Path(tmp)
        refs = {name: make_foreign(root, name) for name in ("conforming", "without_examples")}

        def suite(name: str) -> None:
            done = subprocess.run(
                [*PYTEST, "-p", "no:cacheprovider", "--theory-registry", str(root),
                 "--theory-ref", refs[name]],
                cwd=root, capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"the suite failed for {refs[name]}:\n{done.stdout[-3000:]}")

        for name in refs:
            suite(name)  # warm: images built
        with_examples = statistics.median(
            timed(lambda: suite("conforming")) for _ in range(repeats)
        )
        without = statistics.median(
            timed(lambda: suite("without_examples")) for _ in range(repeats)
        )
    return Figure(
        "suite on a processor without `inputs.examples`", without, "s", with_examples,
        "the same processor with examples", "<= 1.5x floor", without <= 1.5 * with_examples,
        "foreign/conforming (tests/fixtures/foreign); no pytest cache, so generation is paid",
    )  # fmt: skip


# -- 2. one invoke against a raw POST ----------------------------------------------------------


def bench_invoke(samples: int) -> list[Figure]:
    spec = Registry.discover().get_spec(REF)
    with tempfile.TemporaryDirectory(prefix="bench-invoke-") as world:
        adapter = LocalAdapter(world_root=world)
        try:
            handle = adapter.acquire(spec)

            def invoke(execution_id: str) -> None:
                adapter.invoke(
                    **invoke_kwargs(
                        spec,
                        execution_id=execution_id,
                        inputs=INPUTS,
                        write_prefix="/artifacts/bench/{execution_id}/",
                    )
                )

            invoke_ms, raw_ms = [], []
            for i in range(samples + 5):  # interleaved, so drift hits both alike
                took = timed(lambda i=i: invoke(f"inv-{i}")) * 1000
                raw = timed(
                    lambda i=i: handle.client.post(
                        "/run", json=payload(f"raw-{i}")
                    ).raise_for_status()
                )
                if i >= 5:
                    invoke_ms.append(took)
                    raw_ms.append(raw * 1000)
        finally:
            adapter.close()
    invoke_p50, raw_p50 = statistics.median(invoke_ms), statistics.median(raw_ms)
    return [
        Figure("one `invoke` on a reused container, median", invoke_p50, "ms", raw_p50,
               "raw httpx POST /run, median", "<= 1.2x floor", invoke_p50 <= 1.2 * raw_p50,
               f"n={samples}"),
        Figure("one `invoke` on a reused container, p99", percentile(invoke_ms, 99), "ms",
               percentile(raw_ms, 99), "raw httpx POST /run, p99", detail=f"n={samples}"),
    ]  # fmt: skip


# -- 3. inprocess against local ------------------------------------------------------------------


def bench_adapters(repeats: int) -> Figure:
    local = statistics.median(timed(pytest_suite) for _ in range(repeats))
    inprocess = statistics.median(
        timed(lambda: pytest_suite("--theory-adapter", "inprocess")) for _ in range(repeats)
    )
    # What neither lane can shed: starting Python, pytest and its plugins, and collecting.
    start = statistics.median(timed(lambda: pytest_suite("--collect-only")) for _ in range(repeats))
    beyond = (local - start) / max(inprocess - start, 1e-9)
    return Figure(
        "contract suite through `inprocess`", inprocess, "s", local, "the same suite through `local`",
        ">= 10x faster", local / inprocess >= 10,
        f"speed-up {local / inprocess:.1f}x; both include {start:.1f} s of starting pytest and "
        f"collecting (`--collect-only`), beyond which inprocess is {beyond:.1f}x faster",
    )  # fmt: skip


# -- 4. start to healthy -------------------------------------------------------------------------


def bench_start(client: docker.DockerClient, samples: int) -> Figure:
    image = build_image(Registry.discover().get_spec(REF), client)
    world = tempfile.mkdtemp(prefix="bench-start-")
    times = []
    for _ in range(samples):
        container = ProcessorContainer(client, image.reference, ref=REF)
        container.with_envs(IMAGE_DIGEST=image.digest).with_world(world)
        container.with_user(f"{os.getuid()}:{os.getgid()}")
        try:
            started = time.perf_counter()
            container.start()
            wait_healthy(_Probe(container), 60)
            times.append((time.perf_counter() - started) * 1000)
        finally:
            container.stop()
    return Figure(
        "container start to first healthy /healthz, median", statistics.median(times), "ms",
        detail=f"n={samples}, min {min(times):.0f}, max {max(times):.0f}",
    )  # fmt: skip


class _Probe:
    """Just enough of a handle for ``wait_healthy``."""

    def __init__(self, container: ProcessorContainer):
        self.container, self.client = container, container.client

    def stderr(self) -> str:
        return self.container.logs(stdout=False)

    def alive(self) -> bool:
        return self.container.alive()


# -- 5. builds ---------------------------------------------------------------------------------------


def bench_builds(client: docker.DockerClient, cold: bool) -> list[Figure]:
    figures = []
    for spec in Registry.discover().values():
        if cold:
            seconds = timed(lambda spec=spec: build_image(spec, client, force=True))
            figures.append(Figure(f"build {spec.ref} from nothing", seconds, "s",
                                  detail="no layer cache; base image and wheelhouse cached"))  # fmt: skip
        started = time.perf_counter()
        image = build_image(spec, client)
        seconds = time.perf_counter() - started
        figures.append(Figure(
            f"rebuild {spec.ref} with no change", seconds, "s", goal="no work",
            met=not image.built, detail="a tag lookup" if not image.built else "it built!",
        ))  # fmt: skip
    return figures


# -- 6. ArtifactStore against raw blake3 -------------------------------------------------------------


def bench_store(size_mib: int) -> Figure:
    sys.path.insert(0, str(REPO))
    from pytest_theory.django_project.apps.storage.store import FilesystemArtifactStore

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        source = Path(tmp) / "big.bin"
        block = os.urandom(1 << 20)
        with open(source, "wb") as out:
            for i in range(size_mib):
                out.write(block[i % 7 :] + block[: i % 7])
        os.sync()
        cid_of_file(source)  # page cache warm for both
        raw = min(timed(lambda: cid_of_file(source)) for _ in range(3))
        store = FilesystemArtifactStore(Path(tmp) / "world")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        puts, copies = [], []
        # Round 0 warms up: first-touch of page-cache memory in this VM is ~10x slower.
        # Each put writes a new artifact, as runs do, and is deleted untimed afterwards
        # (freeing 256 MiB costs ~90 ms here, which an overwrite would pay inside the put).
        for n in range(4):
            target, copy_to = f"/artifacts/bench/big-{n}.bin", Path(tmp) / f"copy-{n}"
            os.sync()  # each on a quiet disk, not behind the last one's writeback
            puts.append(timed(lambda: store.put_file(target, source)))  # noqa: B023 (called now)
            store.delete(target)
            os.sync()
            copies.append(timed(lambda: shutil.copyfile(source, copy_to)))  # noqa: B023
            copy_to.unlink()
        put, copy = min(puts[1:]), min(copies[1:])
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    put_rate, raw_rate, copy_rate = size_mib / put, size_mib / raw, size_mib / copy
    # A put must hash and write the bytes; on 2 cores both share the CPU.
    bound = 1 / (1 / raw_rate + 1 / copy_rate)
    return Figure(
        f"ArtifactStore put of {size_mib} MiB", put_rate, "MiB/s", raw_rate,
        "raw blake3 of the same bytes", ">= 0.7x floor", put_rate >= 0.7 * raw_rate,
        f"peak memory grew {grown_mib:.1f} MiB during the puts; a plain file copy runs at "
        f"{copy_rate:.0f} MiB/s, so hashing then copying would reach {bound:.0f} MiB/s "
        f"({bound / raw_rate:.2f}x); the put reaches {put_rate / bound:.2f}x of that",
    )  # fmt: skip


# -- 7. xdist -------------------------------------------------------------------------------------------


def bench_xdist(repeats: int) -> list[Figure]:
    def run(*args: str) -> float:
        return statistics.median(
            timed(lambda: pytest_suite("--theory-ref", "all", *args)) for _ in range(repeats)
        )

    serial = run("-n", "0")
    figures = []
    for name, args in (
        ("`pytest -n 2 --theory-ref all`", ("-n", "2")),
        ("`pytest -n 2 --dist loadgroup --theory-ref all`", ("-n", "2", "--dist", "loadgroup")),
    ):
        parallel = run(*args)
        figures.append(
            Figure(
                name,
                parallel,
                "s",
                serial,
                "`-n 0`",
                detail=f"speed-up {serial / parallel:.2f}x on {os.cpu_count()} cores",
            )
        )
    return figures


# -- reliability ---------------------------------------------------------------------------------


def reliability() -> dict[str, Any]:
    """The reliability suite, then every test marked ``fault``; their counts summed."""
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    for selection in (["tests/reliability"], ["tests", "-m", "fault"]):
        report = OUT / "reliability.json"
        report.unlink(missing_ok=True)
        done = subprocess.run(
            [*PYTEST, *selection], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "THEORY_RELIABILITY_JSON": str(report)},
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(selection)} failed:\n{done.stdout[-3000:]}")
        for name, value in json.loads(report.read_text()).items():
            merge = max if name.endswith(" ms") else sum
            counts[name] = merge([counts.get(name, 0), value])
    counts["minutes"] = round((time.perf_counter() - started) / 60, 1)
    return counts


# -- report ----------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def table(figures: list[Figure]) -> str:
    rows = [
        "| figure | measured | floor | ratio | goal | met | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        floor = f"{fmt(f.floor, f.unit)} ({f.floor_name})" if f.floor is not None else ""
        met = "" if f.met is None else "yes" if f.met else "**no**"
        ratio = f"{f.ratio:.2f}x" if f.ratio else ""
        rows.append(
            f"| {f.name} | {fmt(f.value, f.unit)} | {floor} | {ratio} | {f.goal} | {met} | {f.detail} |"
        )
    return "\n".join(rows)  # fmt: skip


@contextmanager
def no_leftovers(client: docker.DockerClient) -> Iterator[None]:
    before = {c.id for c in ours(client)}
    try:
        yield
    finally:
        for container in ours(client):
            if container.id not in before:
                container.remove(force=True, v=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip cold builds and reliability")
    parser.add_argument(
        "--skip-reliability", action="store_true", help="do not run the reliability suite"
    )
    parser.add_argument("--write-results", action="store_true", help="rewrite bench/RESULTS.md")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    client = docker.from_env()
    figures: list[Figure] = []
    with no_leftovers(client):
        for step in (
            lambda: [bench_warm_suite(client, args.repeats)],
            lambda: [bench_examples(args.repeats)],
            lambda: bench_invoke(200),
            lambda: [bench_adapters(args.repeats)],
            lambda: [bench_start(client, 10)],
            lambda: bench_builds(client, cold=not args.quick),
            lambda: [bench_store(256)],
            lambda: bench_xdist(args.repeats),
        ):
            for figure in step():
                figures.append(figure)
                print(f"{figure.name}: {fmt(figure.value, figure.unit)}", file=sys.stderr)
    counts = {} if args.quick or args.skip_reliability else reliability()
    print(table(figures))
    if counts:
        print(json.dumps(counts, indent=2))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {"machine": machine, "figures": [asdict(f) for f in figures], "reliability": counts}
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    if args.write_results:
        write_results(figures, counts, machine)
    return 0


def write_results(figures: list[Figure], counts: dict[str, Any], machine: str) -> None:
    lines = [
        "# Benchmark and reliability results",
        "",
        f"Measured on this project's CI kind of machine ({machine}) on "
        f"{time.strftime('%Y-%m-%d')}, by:",
        "",
        "```sh",
        ".venv/bin/python -m bench.run --write-results",
        "```",
        "",
        table(figures),
        "",
        "## Reliability",
        "",
        "Counted by `tests/reliability` and the tests marked `fault` (which also run in CI):",
        "",
        *[f"- {name}: {value}" for name, value in sorted(counts.items())],
        "",
    ]
    path = REPO / "bench" / "RESULTS.md"
    # What is written by hand below the marker (reading the figures) survives a rerun.
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    path.write_text("\n".join(lines) + "\n" + notes)


NOTES_MARKER = "<!-- notes: kept by bench.run --write-results -->"


if __name__ == "__main__":
    raise SystemExit(main())
