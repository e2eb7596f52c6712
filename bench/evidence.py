"""Issue 18's two figures, each against a floor measured in the same run.

    .venv/bin/python -m bench.evidence [--repeats 3] [--write-results]

1. warm ``pytest --theory-ref llm/litellm@1`` against its physical floor: pytest's
   own start and collection (``--collect-only`` of the same command), one
   container's start to a healthy ``/healthz``, and the suite's requests sent raw
   (``POST /run``) over one connection. Goal: at most 1.5x.
2. a no-change rerun of ``--theory-ref all --theory-report DIR --theory-reuse``
   against a bare ``pytest --collect-only`` of the same refs. Goal: at most 1.2x.

``--write-results`` rewrites this section of ``bench/RESULTS.md`` (below the notes
marker, which ``bench.run --write-results`` keeps).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.run import (
    PYTEST,
    REF,
    REPO,
    Figure,
    _Probe,
    fmt,
    payload,
    suite_footprint,
    table,
    timed,
)
from pytest_theory.adapters.containers import ProcessorContainer
from pytest_theory.adapters.http import wait_healthy
from pytest_theory.images import build_image
from pytest_theory.registry import Registry

SUITE = [*PYTEST, "--noconftest"]  # with its cache (fuzz cases), as a user runs it
START = "<!-- evidence: written by bench.evidence --write-results -->"
END = "<!-- /evidence -->"


def pytest_run(*args: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run([*SUITE, *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}")


def interleaved(
    measured: Callable[[], None], floor: Callable[[], None], repeats: int
) -> tuple[float, float]:
    """Medians of ``measured`` and ``floor`` timed in turn, so a shared machine's load
    drifting during the run weighs on both alike."""
    pairs = [(timed(measured), timed(floor)) for _ in range(repeats)]
    return statistics.median(m for m, _ in pairs), statistics.median(f for _, f in pairs)


def one_container(
    client: docker.DockerClient, image: str, digest: str, world: Path, requests: int
) -> tuple[float, float]:
    """(start to healthy, ``requests`` raw ``POST /run`` over its one connection), in seconds."""
    container = ProcessorContainer(client, image, ref=REF)
    container.with_env(IMAGE_DIGEST=digest).with_world(world)
    container.with_user(f"{os.getuid()}:{os.getgid()}")
    try:
        started = time.perf_counter()
        container.start()
        wait_healthy(_Probe(container), 60)
        healthy = time.perf_counter()
        for i in range(requests):
            container.client.post("/run", json=payload(f"raw-{i}"), timeout=30).raise_for_status()
        return healthy - started, time.perf_counter() - healthy
    finally:
        container.stop()


def bench_warm_suite(client: docker.DockerClient, repeats: int) -> Figure:
    pytest_run("--theory-ref", REF)  # warm: image built, imports cached
    containers, requests = suite_footprint(client)
    suite, collect = interleaved(
        lambda: pytest_run("--theory-ref", REF),
        lambda: pytest_run("--theory-ref", REF, "--collect-only", "-q"),
        repeats,
    )
    image = build_image(Registry.discover().get_spec(REF), client)
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as world:
        samples = [
            one_container(client, image.reference, image.digest, Path(world), requests)
            for _ in range(repeats)
        ]
    start = statistics.median(s for s, _ in samples)
    sent = statistics.median(r for _, r in samples)
    floor = collect + start + sent
    return Figure(
        "warm `pytest --theory-ref llm/litellm@1`", suite, "s", floor,
        f"collect-only {fmt(collect, 's')} + one start to healthy {fmt(start, 's')} + "
        f"{requests} raw requests over one connection {fmt(sent, 's')}",
        "<= 1.5x floor", suite <= 1.5 * floor,
        f"the suite boots {containers} containers (default and variants)",
    )  # fmt: skip


def bench_reuse(repeats: int) -> Figure:
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as report:
        args = ["--theory-ref", "all", "--theory-report", report]
        pytest_run(*args)  # the stored run every rerun reuses
        rerun, collect = interleaved(
            lambda: pytest_run(*args, "--theory-reuse"),
            lambda: pytest_run("--theory-ref", "all", "--collect-only", "-q"),
            repeats,
        )
    return Figure(
        "no-change rerun of `--theory-ref all` with `--theory-reuse`", rerun, "s", collect,
        "`pytest --theory-ref all --collect-only`", "<= 1.2x floor", rerun <= 1.2 * collect,
        "nothing runs: every cell reused, no build, no container",
    )  # fmt: skip


def write_results(figures: list[Figure], machine: str) -> None:
    section = "\n".join(
        [
            START,
            "",
            "## Evidence: reports, reuse (issue 18)",
            "",
            f"Measured on {machine} on {time.strftime('%Y-%m-%d')}, by "
            "`.venv/bin/python -m bench.evidence --write-results` (medians of the repeats; "
            "each floor measured in the same run):",
            "",
            table(figures),
            "",
            END,
        ]
    )
    path = REPO / "bench" / "RESULTS.md"
    text = path.read_text()
    if START in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    client = docker.from_env()
    figures = [bench_warm_suite(client, args.repeats), bench_reuse(args.repeats)]
    print(table(figures))
    if args.write_results:
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        write_results(figures, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
