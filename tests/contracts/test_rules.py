"""Error codes and statuses, mode resolution with CI safety, digests, the env fingerprint."""

from __future__ import annotations

import pytest

from pytest_theory.contracts import (
    ADAPTER_CODES,
    PROCESSOR_STATUS,
    ContractError,
    ErrorCode,
    Mode,
    digests_equal,
    error_envelope,
    is_ci,
    is_pinned,
    is_valid,
    is_valid_status,
    normalize_digest,
    resolve_mode,
    status_for,
)
from pytest_theory.contracts.digests import repository_of
from pytest_theory.contracts.fingerprint import env_fingerprint
from pytest_theory.contracts.outputs import declared_output, relpath_of

HEX = "0123456789abcdef" * 4


def test_status_table_is_the_spec_table() -> None:
    assert {c.value: s for c, s in PROCESSOR_STATUS.items()} == {
        "ERR_PAYLOAD": 400,
        "ERR_INPUTS": 400,
        "ERR_WRITE_PREFIX": 400,
        "ERR_MODE": 400,
        "ERR_CI_SAFETY": 403,
        "ERR_MISSING_SECRET": 500,
        "ERR_PROVIDER": 502,
        "ERR_TIMEOUT": 504,
        "ERR_INTERNAL": 500,
    }
    assert {c.value for c in ADAPTER_CODES} == {
        "ERR_DOCKER",
        "ERR_IMAGE_UNAVAILABLE",
        "ERR_HEALTH",
        "ERR_ADAPTER_INVOCATION",
        "ERR_ENVELOPE_INVALID",
        "ERR_IMAGE_DIGEST_MISMATCH",
        "ERR_TIMEOUT",
        "ERR_CI_SAFETY",
        "ERR_REGISTRY",
        "ERR_MODAL",
    }


@pytest.mark.parametrize(
    ("code", "status", "ok"),
    [
        ("ERR_PAYLOAD", 400, True),
        ("ERR_PAYLOAD", 415, True),
        ("ERR_PAYLOAD", 413, True),
        ("ERR_PAYLOAD", 422, False),
        ("ERR_INPUTS", 413, False),
        ("ERR_CI_SAFETY", 403, True),
        ("ERR_TIMEOUT", 500, False),
        ("ERR_INTERNAL", 500, True),
    ],
)
def test_valid_statuses(code: str, status: int, ok: bool) -> None:
    assert is_valid_status(code, status) is ok


def test_every_error_code_makes_a_valid_error_envelope() -> None:
    for code in ErrorCode:
        envelope = error_envelope(
            code, "safe text", image_digest="sha256:" + HEX, env_fingerprint="x"
        )
        assert is_valid("envelope_error", envelope), code
    assert status_for("ERR_PROVIDER") == 502
    assert ContractError("ERR_PAYLOAD", "too big", status=413).status == 413


@pytest.mark.parametrize(
    ("mode", "env", "expected"),
    [
        ("mock", {}, Mode.MOCK),
        ("real", {}, Mode.REAL),
        ("mock", {"CI": "true"}, Mode.MOCK),
        ("real", {"CI": "false"}, Mode.REAL),
        ("real", {"CI": ""}, Mode.REAL),
    ],
)
def test_modes_resolve(mode: str, env: dict[str, str], expected: Mode) -> None:
    assert resolve_mode(mode, env) is expected


@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes"])
def test_real_is_refused_under_ci(ci: str) -> None:
    with pytest.raises(ContractError) as info:
        resolve_mode("real", {"CI": ci})
    assert info.value.code is ErrorCode.ERR_CI_SAFETY and info.value.status == 403
    assert is_ci({"CI": ci})


@pytest.mark.parametrize("mode", ["smoke", "MOCK", "Real", "", None, 1, ["mock"]])
def test_anything_but_mock_or_real_is_a_mode_error(mode: object) -> None:
    with pytest.raises(ContractError) as info:
        resolve_mode(mode, {})
    assert info.value.code is ErrorCode.ERR_MODE


def test_environment_heuristics_do_not_choose_the_mode() -> None:
    assert resolve_mode("real", {"LLM_PROVIDER": "mock", "MOCK": "1"}) is Mode.REAL


@pytest.mark.parametrize(
    "value",
    [
        f"sha256:{HEX}",
        f"repo@sha256:{HEX}",
        f"ghcr.io/o/r/x@sha256:{HEX}",
        f"localhost:5000/x:tag@sha256:{HEX}",
        f"SHA256:{HEX.upper()}",
    ],
)
def test_digest_forms_normalise_to_the_same_digest(value: str) -> None:
    assert normalize_digest(value) == f"sha256:{HEX}"
    assert digests_equal(value, f"sha256:{HEX}")


@pytest.mark.parametrize("value", ["", "sha256:abc", f"md5:{HEX}", f"repo:{HEX}", "latest"])
def test_malformed_digests_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="digest"):
        normalize_digest(value)
    assert not digests_equal(value, value)


def test_pinned_references() -> None:
    assert is_pinned(f"ghcr.io/o/r@sha256:{HEX}")
    assert not is_pinned("ghcr.io/o/r:latest")
    assert not is_pinned(f"sha256:{HEX}")


def test_env_fingerprint_names_secrets_never_values() -> None:
    runtime = {"cpu": "1", "memory_gb": 2, "timeout_s": 600, "gpu": None}
    fingerprint = env_fingerprint(runtime, {"OPENAI_API_KEY": "sk-value"})
    assert fingerprint == "cpu=1;memory_gb=2;gpu=none;secrets=OPENAI_API_KEY"
    assert env_fingerprint(runtime, []) == "cpu=1;memory_gb=2;gpu=none;secrets=none"


def test_a_repository_is_read_from_a_pinned_reference_only() -> None:
    assert repository_of(f"localhost:5055/p/x@sha256:{HEX}") == "localhost:5055/p/x"
    with pytest.raises(ValueError, match=r"^not a pinned reference: 'ghcr\.io/o/r:latest'$"):
        repository_of("ghcr.io/o/r:latest")


DECLARED = [
    {"path": "text/a.txt", "mime": "text/plain"},
    {"path": "img/*.png", "mime": "image/png"},
]


@pytest.mark.parametrize(
    ("relpath", "index"),
    [("text/a.txt", 0), ("img/x.png", 1), ("img/x.PNG", None), ("text/b.txt", None), ("a", None)],
)
def test_an_output_is_declared_by_its_exact_path_or_a_case_sensitive_glob(
    relpath: str, index: int | None
) -> None:
    assert declared_output(DECLARED, relpath) == (None if index is None else DECLARED[index])


def test_an_output_path_is_read_relative_to_the_prefix_outputs_folder() -> None:
    assert relpath_of("/artifacts/o/e-1/outputs/text/a.txt", "/artifacts/o/e-1/") == "text/a.txt"


def test_is_ci_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", " Yes ")
    assert is_ci()
    monkeypatch.delenv("CI")
    assert not is_ci()


def test_mode_refusals_say_why() -> None:
    with pytest.raises(ContractError) as info:
        resolve_mode("smoke", {})
    assert info.value.message == "mode must be 'mock' or 'real'" == str(info.value)
    with pytest.raises(ContractError) as info:
        resolve_mode("real", {"CI": "true"})
    assert info.value.message == "mode 'real' is refused when CI=true" == str(info.value)


def test_a_digest_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a digest must be a string$"):
        normalize_digest(None)  # type: ignore[arg-type]


def test_env_fingerprint_names_the_gpu_and_every_secret_sorted() -> None:
    runtime = {"cpu": 2, "memory_gb": 8, "gpu": "a10g"}
    assert (
        env_fingerprint(runtime, ["B_KEY", "A_KEY", "B_KEY"])
        == "cpu=2;memory_gb=8;gpu=a10g;secrets=A_KEY,B_KEY"
    )


def test_a_contract_error_carries_its_code_message_and_status() -> None:
    error = ContractError("ERR_INPUTS", "inputs.x: too long")
    assert (error.code, error.message, str(error), error.status) == (
        ErrorCode.ERR_INPUTS,
        "inputs.x: too long",
        "inputs.x: too long",
        400,
    )
    assert repr(error) == "ContractError(ERR_INPUTS, 'inputs.x: too long')"
    # An adapter's own code has no processor status: it is a 500 unless said otherwise.
    assert ContractError("ERR_DOCKER", "no engine").status == 500


def test_an_error_envelope_without_context_has_empty_fields() -> None:
    assert error_envelope("ERR_TIMEOUT", "took too long", attempt=2) == {
        "status": "error",
        "execution_id": "",
        "error": {"code": "ERR_TIMEOUT", "message": "took too long"},
        "meta": {"image_digest": "", "env_fingerprint": "", "attempt": 2},
    }
