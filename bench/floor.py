"""The warm suite's floor: a plain script doing by hand what the suite does to containers.

    python bench/floor.py IMAGE DIGEST CONTAINERS REQUESTS

For each of CONTAINERS containers, one after the other: ``docker run``, poll
``/healthz``, its share of REQUESTS raw ``POST /run``s, ``docker rm``. No
harness, no checks: what the suite's work costs with nothing around it. The
bench times it as a process, as it times the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

INPUTS = {
    "schema": "v1",
    "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
}


def payload(execution_id: str) -> dict[str, object]:
    return {
        "schema": "v1",
        "execution_id": execution_id,
        "ref": "llm/litellm@1",
        "mode": "mock",
        "inputs": INPUTS,
        "write_prefix": "/artifacts/bench/{execution_id}/",
    }


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def one_container(image: str, digest: str, world: Path, n: int, requests: int) -> None:
    cid = docker(
        "run", "-d", "-p", "127.0.0.1::8000", "-e", f"IMAGE_DIGEST={digest}",
        "-u", f"{os.getuid()}:{os.getgid()}", "-v", f"{world}:/artifacts",
        "--label", "org.pytest-theory.bench=1", image,
    ).strip()  # fmt: skip
    try:
        port = docker("port", cid, "8000/tcp").split(":")[-1].strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            while True:
                try:
                    if http.get("/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            for i in range(requests):
                http.post("/run", json=payload(f"floor-{n}-{i}"), timeout=30).raise_for_status()
    finally:
        docker("rm", "-f", cid)


def main(argv: list[str]) -> int:
    image, digest, containers, requests = argv[0], argv[1], int(argv[2]), int(argv[3])
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        world = Path(tmp) / "artifacts"
        world.mkdir()
        for n in range(containers):
            share = requests // containers + (n < requests % containers)
            one_container(image, digest, world, n, share)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
