"""Running a processor for the control plane: admission, the run, settlement, all recorded.

Order of a run (each step an event in the ledger):

1. CI safety: ``real`` under ``CI=true`` is refused here, before anything starts.
2. Admission: the price (``budget.available@1``'s ``required_usd_micro``, or the policy's
   ``reserve_usd_micro``) within the policy's ``max_usd_micro``; a priced processor needs a
   plan; admission predicates; path leases on the declared outputs (when ``LEASES_ENABLED``
   and the policy's ``enable_path_leases``); then the reservation, one conditional UPDATE
   that also keeps the plan's total within ``max_usd_micro``. A refusal reserves nothing.
3. Attachments are stored in the world and ``$attach`` references rewritten.
4. The run through the adapter, retried for transient adapter failures only.
5. Success predicates, then settlement: the cost the receipt reports
   (``usage.cost_usd_micro``; the reservation when it reports none) is spent, the rest of
   the reservation released; a failure releases it all. The leases are released.

Every execution carries a deadline: past it, ``reaper.reap`` fails a run whose process died
and gives its reservation back. Settlement and the reaper each claim the execution with one
conditional UPDATE, so a reservation is released exactly once.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from pytest_theory.adapters import get_adapter
from pytest_theory.adapters.base import OnEvent, invoke_kwargs
from pytest_theory.contracts.errors import (
    TRANSIENT_ADAPTER_CODES,
    ContractError,
    ErrorCode,
    error_envelope,
)
from pytest_theory.contracts.hashing import inputs_hash
from pytest_theory.contracts.modes import resolve_mode
from pytest_theory.contracts.worldpath import determinism_receipt_path, expand_write_prefix
from pytest_theory.django_project.apps.leases.leases import LeaseConflict, LeaseHandle, LeaseManager
from pytest_theory.django_project.apps.runs import budget, ledger, predicates
from pytest_theory.django_project.apps.runs.attachments import rewrite, store_attachments
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent, Plan
from pytest_theory.django_project.apps.runs.policies import Policy, policy_for
from pytest_theory.django_project.apps.storage.store import ArtifactStore
from pytest_theory.processors.runtime.logs import NdjsonLogger
from pytest_theory.registry import ProcessorSpec

Kind = LedgerEvent.Kind
#: Beyond every attempt's timeout and backoff: how long a run may take before it is abandoned.
DEADLINE_MARGIN_S = 120
OPEN = (Execution.Status.PENDING, Execution.Status.RUNNING)


def price_of(spec: ProcessorSpec, policy: Policy) -> int:
    """What one run reserves: the admission predicate's requirement, or the policy's amount."""
    return max(predicates.required_usd_micro(spec), policy.reserve_usd_micro)


def lease_selectors(spec: ProcessorSpec, prefix: str) -> list[dict[str, str]]:
    """The registry's declared outputs under ``prefix``: a file exactly, a glob by its folder."""
    selectors = []
    for output in spec.outputs:
        path = output["path"]
        if any(c in path for c in "*?["):
            folder = path.split("/")
            cut = next(i for i, part in enumerate(folder) if any(c in part for c in "*?["))
            base = "/".join(folder[:cut])
            selectors.append(
                {"kind": "prefix", "path": f"{prefix}outputs/{base}/".replace("//", "/")}
            )
        else:
            selectors.append({"kind": "exact", "path": f"{prefix}outputs/{path}"})
    return selectors


@dataclass
class RunRequest:
    spec: ProcessorSpec
    inputs: dict[str, Any]
    write_prefix: str
    adapter: str = "local"
    mode: str = "mock"
    adapter_opts: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Path] = field(default_factory=dict)
    plan: Plan | None = None
    stream: bool = False
    on_event: OnEvent | None = None
    execution_id: str = field(default_factory=lambda: f"e-{uuid.uuid4().hex}")


@dataclass
class RunOutcome:
    execution: Execution
    envelope: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.envelope.get("status") == "success"


class RunService:
    """Runs processors through adapters it creates on first use; ``close()`` removes their containers."""

    def __init__(
        self,
        store: ArtifactStore,
        *,
        world_root: str | Path,
        logger: NdjsonLogger | None = None,
        leases: LeaseManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self.world_root = Path(world_root)
        self.logger = logger or NdjsonLogger("control-plane", stream=sys.stderr)
        self.leases = leases or LeaseManager()
        self.sleep = sleep
        self._adapters: dict[str, Any] = {}

    def adapter(self, name: str) -> Any:
        if name not in self._adapters:
            self._adapters[name] = get_adapter(name)
        return self._adapters[name]

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters = {}

    # -- the run ---------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunOutcome:
        spec = request.spec
        predicates.check_known(spec)
        policy = policy_for(spec)
        budget_s = spec.timeout_s * policy.max_attempts + sum(policy.backoff_ms) / 1000
        execution = Execution.objects.create(
            id=request.execution_id,
            plan=request.plan,
            ref=str(spec.ref),
            adapter=request.adapter,
            mode=request.mode,
            write_prefix=request.write_prefix,
            registry_snapshot=spec.snapshot(),
            deadline_at=timezone.now() + timedelta(seconds=budget_s + DEADLINE_MARGIN_S),
        )
        plan_key = request.plan.key if request.plan else ""
        log = self._log_for(execution)
        try:
            resolve_mode(request.mode)
            execution.prefix = expand_write_prefix(request.write_prefix, execution.id)
        except ContractError as exc:
            return self._refuse(execution, plan_key, exc)
        leases: list[LeaseHandle] = []
        refusal = self._admit(execution, request, policy, leases)
        if refusal is not None:
            return self._refuse(execution, plan_key, refusal)
        try:
            log("execution.admitted", reserved_usd_micro=execution.reserved_usd_micro)
            try:
                inputs = rewrite(request.inputs, store_attachments(self.store, request.attachments))
                execution.inputs_hash = inputs_hash(inputs)
                envelope = self._attempts(execution, request, inputs, plan_key, policy, log)
            except Exception as exc:
                envelope = error_envelope(
                    ErrorCode.ERR_INTERNAL,
                    f"the control plane failed during the run ({type(exc).__name__})",
                    execution_id=execution.id,
                )
                self._settle(execution, request, envelope, plan_key, log)
                raise
            return self._settle(execution, request, envelope, plan_key, log)
        finally:
            for handle in leases:
                handle.release()

    def _log_for(self, execution: Execution) -> Callable[..., None]:
        def log(event: str, level: str = "info", **fields: Any) -> None:
            self.logger.log(
                event,
                level,
                execution_id=execution.id,
                trace_id=execution.id,
                ref=execution.ref,
                **fields,
            )

        return log

    def _admit(
        self,
        execution: Execution,
        request: RunRequest,
        policy: Policy,
        leases: list[LeaseHandle],
    ) -> ContractError | None:
        price = price_of(request.spec, policy)
        if price > policy.max_usd_micro:
            return ContractError(
                ErrorCode.ERR_BUDGET,
                f"a run reserves {price} µUSD, over the policy's ceiling of {policy.max_usd_micro}",
            )
        if request.plan is None and price:
            return ContractError(
                ErrorCode.ERR_BUDGET,
                f"{execution.ref} costs up to {price} µUSD a run: name the plan it draws on "
                "with --plan KEY (create one with: manage.py plans create KEY --budget-usd-micro N)",
            )
        context = predicates.Context(store=self.store, plan=request.plan, prefix=execution.prefix)
        outcomes = predicates.evaluate(request.spec, "admission", context)
        execution.predicates = {"admission": [o.as_dict() for o in outcomes]}
        failed = [o for o in outcomes if not o.ok]
        if failed:
            return ContractError(
                ErrorCode.ERR_PREDICATE,
                f"admission predicate {failed[0].id} failed: {failed[0].detail}",
            )
        if self.leases.enabled and policy.path_leases:
            try:
                leases.append(
                    self.leases.acquire(
                        request.plan.key if request.plan else execution.id,
                        lease_selectors(request.spec, execution.prefix),
                        reason=f"execution {execution.id}",
                        ttl_s=policy.lease_ttl_s,
                    )
                )
            except LeaseConflict as exc:
                return ContractError(ErrorCode.ERR_PREDICATE, f"lease conflict: {exc}")
        try:
            with transaction.atomic():  # the reservation, the row and its event, or none
                if request.plan is not None and price:
                    budget.reserve(request.plan.pk, price, cap=policy.max_usd_micro)
                    execution.reserved_usd_micro = price
                execution.save(update_fields=["predicates", "reserved_usd_micro", "prefix"])
                ledger.append(
                    Kind.ADMISSION,
                    execution_id=execution.id,
                    plan_key=request.plan.key if request.plan else "",
                    data={
                        "ref": execution.ref,
                        "adapter": execution.adapter,
                        "mode": execution.mode,
                        "reserved_usd_micro": execution.reserved_usd_micro,
                        "predicates": execution.predicates,
                    },
                )
        except budget.BudgetRefused as exc:
            execution.reserved_usd_micro = 0
            for handle in leases:
                handle.release()
            return ContractError(ErrorCode.ERR_BUDGET, str(exc))
        return None

    def _refuse(self, execution: Execution, plan_key: str, exc: ContractError) -> RunOutcome:
        envelope = error_envelope(exc.code, exc.message, execution_id=execution.id)
        execution.status = Execution.Status.REFUSED
        execution.error_code = exc.code.value
        execution.envelope = envelope
        execution.finished_at = timezone.now()
        with transaction.atomic():
            execution.save()
            ledger.append(
                Kind.REFUSAL,
                execution_id=execution.id,
                plan_key=plan_key,
                data={"code": exc.code.value, "message": exc.message},
            )
        self._log_for(execution)(
            "execution.refused", "warn", code=exc.code.value, message=exc.message
        )
        return RunOutcome(execution, envelope)

    def _attempts(
        self,
        execution: Execution,
        request: RunRequest,
        inputs: dict[str, Any],
        plan_key: str,
        policy: Any,
        log: Callable[..., None],
    ) -> dict[str, Any]:
        execution.status = Execution.Status.RUNNING
        execution.started_at = timezone.now()
        execution.save()
        ledger.append(
            Kind.START,
            execution_id=execution.id,
            plan_key=plan_key,
            data={"inputs_hash": execution.inputs_hash, "prefix": execution.prefix},
        )
        opts = {"world_root": str(self.world_root), **request.adapter_opts}
        adapter = self.adapter(request.adapter)
        while True:
            execution.attempts += 1
            log(
                "execution.start",
                attempt=execution.attempts,
                adapter=request.adapter,
                mode=request.mode,
            )
            kwargs = invoke_kwargs(
                request.spec,
                execution_id=execution.id,
                inputs=inputs,
                mode=request.mode,
                write_prefix=request.write_prefix,
                adapter_opts=opts,
                stream=request.stream,
            )
            envelope: dict[str, Any] = adapter.invoke(**kwargs, on_event=request.on_event)
            code = envelope.get("error", {}).get("code")
            transient = code is not None and ErrorCode(code) in TRANSIENT_ADAPTER_CODES
            if not transient or execution.attempts >= policy.max_attempts:
                return envelope
            pause = policy.backoff_s(execution.attempts)
            ledger.append(
                Kind.RETRY,
                execution_id=execution.id,
                plan_key=plan_key,
                data={"attempt": execution.attempts, "code": code, "backoff_s": pause},
            )
            log("execution.retry", "warn", attempt=execution.attempts, code=code, backoff_s=pause)
            self.sleep(pause)

    def _settle(
        self,
        execution: Execution,
        request: RunRequest,
        envelope: dict[str, Any],
        plan_key: str,
        log: Callable[..., None],
    ) -> RunOutcome:
        execution.envelope = envelope
        execution.finished_at = timezone.now()
        if execution.started_at:
            execution.duration_ms = int(
                (execution.finished_at - execution.started_at).total_seconds() * 1000
            )
        if envelope.get("status") == "success":
            execution.index_path = envelope["index_path"]
            execution.receipt_path = execution.prefix + "receipt.json"
            execution.determinism_path = determinism_receipt_path(execution.id)
            context = predicates.Context(
                store=self.store, plan=request.plan, prefix=execution.prefix, envelope=envelope
            )
            outcomes = predicates.evaluate(request.spec, "success", context)
            execution.predicates = {
                **execution.predicates,
                "success": [o.as_dict() for o in outcomes],
            }
            failed = [o for o in outcomes if not o.ok]
            if failed:
                envelope = error_envelope(
                    ErrorCode.ERR_PREDICATE,
                    f"success predicate {failed[0].id} failed: {failed[0].detail}",
                    execution_id=execution.id,
                    image_digest=envelope["meta"]["image_digest"],
                    env_fingerprint=envelope["meta"]["env_fingerprint"],
                )
        ok = envelope.get("status") == "success"
        status = Execution.Status.SUCCEEDED if ok else Execution.Status.FAILED
        with transaction.atomic():
            claimed = Execution.objects.filter(pk=execution.pk, status__in=OPEN).update(
                status=status
            )
            if not claimed:  # the reaper failed it and released the reservation already
                execution.refresh_from_db()
                return RunOutcome(execution, execution.envelope or envelope)
            execution.status = status
            if ok:
                reported = self._reported_cost(execution)
                if request.plan is not None and execution.reserved_usd_micro:
                    execution.cost_usd_micro = budget.settle(
                        request.plan.pk,
                        execution.reserved_usd_micro,
                        execution.reserved_usd_micro if reported is None else reported,
                    )
                kind, data = (
                    Kind.SETTLEMENT,
                    {
                        "cost_usd_micro": execution.cost_usd_micro,
                        "reported_cost_usd_micro": reported,
                    },
                )
            else:
                self._release(execution)
                execution.error_code = envelope["error"]["code"]
                kind, data = (
                    Kind.FAILURE,
                    {"code": execution.error_code, "message": envelope["error"]["message"]},
                )
            execution.save()
            ledger.append(
                kind,
                execution_id=execution.id,
                plan_key=plan_key,
                data={**data, "status": execution.status, "attempts": execution.attempts},
            )
        log(
            "execution.settled",
            status=execution.status,
            cost_usd_micro=execution.cost_usd_micro,
            duration_ms=execution.duration_ms,
        )
        return RunOutcome(execution, envelope)

    def _reported_cost(self, execution: Execution) -> int | None:
        """``usage.cost_usd_micro`` from the run's receipt, when it holds a whole number."""
        try:
            receipt = json.loads(self.store.read(execution.prefix + "receipt.json"))
            cost = receipt["usage"]["cost_usd_micro"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cost if isinstance(cost, int) and not isinstance(cost, bool) and cost >= 0 else None

    def _release(self, execution: Execution) -> None:
        if execution.plan_id is not None and execution.reserved_usd_micro:
            budget.release(execution.plan_id, execution.reserved_usd_micro)
            execution.reserved_usd_micro = 0
