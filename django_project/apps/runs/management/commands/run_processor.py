"""``manage.py run_processor``: run one processor through an adapter, recording the execution.

    manage.py run_processor --ref llm/litellm@1 --adapter local --mode mock --json \\
        --inputs-json '{"schema":"v1","params":{"model":"m","messages":[{"role":"user","content":"hi"}]}}'

With ``--json`` the envelope is the only thing on stdout; logs go to stderr as
NDJSON. Exit status: 0 for a success envelope, 1 for an error envelope, 2 for a
bad flag or bad inputs: everything (the execution id, attachments, the inputs against
the registry's schema, the plan) is checked before a row is written or a container
starts, and with ``--json`` the refusal is a canonical error envelope on stdout too.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.contracts import schemas
from pytest_theory.contracts.errors import ErrorCode, error_envelope
from pytest_theory.contracts.outputs import relpath_of
from pytest_theory.contracts.worldpath import WorldPathError, validate_write_prefix
from pytest_theory.django_project.apps.runs.attachments import (
    AttachmentError,
    parse_attach,
    planned,
    referenced,
    rewrite,
)
from pytest_theory.django_project.apps.runs.models import Execution, Plan
from pytest_theory.django_project.apps.runs.predicates import check_known
from pytest_theory.django_project.apps.runs.reaper import reap
from pytest_theory.django_project.apps.runs.service import RunRequest, RunService
from pytest_theory.django_project.apps.storage.store import FilesystemArtifactStore
from pytest_theory.processors.runtime.logs import NdjsonLogger
from pytest_theory.registry import Registry, RegistryError

#: SPEC's execution id, matched whole (``re.match`` with ``$`` lets a final newline through).
EXECUTION_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class BadInput(Exception):
    """A refusal before anything runs: exit 2, and an error envelope with ``--json``."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ERR_PAYLOAD):
        super().__init__(message)
        self.message = message
        self.code = code


def usage(message: str, code: ErrorCode = ErrorCode.ERR_PAYLOAD) -> BadInput:
    return BadInput(message, code)


def json_object(flag: str, text: str, code: ErrorCode = ErrorCode.ERR_PAYLOAD) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise usage(f"{flag} is not valid JSON ({exc})", code) from None
    if not isinstance(value, dict):
        raise usage(f"{flag} must be a JSON object", code)
    return value


class Command(BaseCommand):
    help = "Run a processor through an adapter and record the execution (see --help)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ref", required=True, help="processor ref, e.g. llm/litellm@1")
        parser.add_argument("--adapter", choices=["local", "modal", "inprocess"], default="local")
        parser.add_argument("--mode", choices=["mock", "real"], default="mock")
        parser.add_argument(
            "--write-prefix",
            help="world path ending in '/', with {execution_id} "
            "(default /artifacts/outputs/<ns>-<name>/{execution_id}/)",
        )
        parser.add_argument(
            "--inputs-json", default="{}", help="the processor's inputs (JSON object)"
        )
        parser.add_argument(
            "--adapter-opts-json", default="{}", help="adapter options (JSON object)"
        )
        parser.add_argument(
            "--attach",
            action="append",
            default=[],
            metavar="NAME=PATH",
            help='store a file and rewrite {"$attach": NAME} to it (repeatable)',
        )
        parser.add_argument("--plan", help="plan key whose budget the run draws on")
        parser.add_argument(
            "--json", action="store_true", help="print the envelope as JSON on stdout"
        )
        parser.add_argument("--save-dir", help="copy the outputs into this folder")
        parser.add_argument("--save-first", help="copy the first output to this file")
        parser.add_argument(
            "--stream", action="store_true", help="drive /run-stream; events on stderr"
        )
        parser.add_argument("--execution-id", help="use this execution id (default: a new one)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            request = self._request(options)
        except BadInput as exc:
            if options["json"]:
                self.stdout.write(json.dumps(error_envelope(exc.code, exc.message)))
            raise CommandError(f"{exc.code.value}: {exc.message}", returncode=2) from None
        logger = NdjsonLogger("control-plane", stream=self.stderr)  # type: ignore[arg-type]
        if options["stream"]:
            request.on_event = lambda event, data: logger.log(
                f"stream.{event}", execution_id=request.execution_id, **data
            )
        # One world for the adapter, the service and --save-dir/--save-first.
        world_root = request.adapter_opts.get("world_root", settings.THEORY_WORLD_ROOT)
        reap(world_root=world_root)  # what dead runs hold is given back before this admission
        store = FilesystemArtifactStore(world_root)
        service = RunService(store, world_root=world_root, logger=logger)
        try:
            outcome = service.run(request)
        finally:
            service.close()
        if outcome.ok:
            self._save(store, request, outcome.envelope, options)
        if options["json"]:
            self.stdout.write(json.dumps(outcome.envelope))
        else:
            self._summary(outcome)
        if not outcome.ok:
            sys.exit(1)

    def _request(self, options: dict[str, Any]) -> RunRequest:
        """Every flag checked before anything runs; each mistake is one clear message."""
        try:
            spec = Registry.discover(settings.THEORY_REGISTRY_ROOTS).get_spec(options["ref"])
            check_known(spec)
        except RegistryError as exc:
            raise usage(exc.message, ErrorCode.ERR_REGISTRY) from None
        execution_id = options["execution_id"]
        if execution_id is not None:
            if not EXECUTION_ID.fullmatch(execution_id) or execution_id in (".", ".."):
                raise usage("--execution-id must be 1-128 of A-Z a-z 0-9 _ . - (and not . or ..)")
            if Execution.objects.filter(pk=execution_id).exists():
                raise usage(f"--execution-id {execution_id} was used already: ids are never reused")
        inputs = json_object("--inputs-json", options["inputs_json"], ErrorCode.ERR_INPUTS)
        adapter_opts = json_object("--adapter-opts-json", options["adapter_opts_json"])
        if not isinstance(adapter_opts.get("world_root", ""), str):
            raise usage("--adapter-opts-json: world_root must be a path (a string)")
        prefix = (
            options["write_prefix"]
            or f"/artifacts/outputs/{spec.ref.ns}-{spec.ref.name}/{{execution_id}}/"
        )
        if not prefix.endswith("/"):
            raise usage("--write-prefix must end with /", ErrorCode.ERR_WRITE_PREFIX)
        try:
            validate_write_prefix(prefix)
        except WorldPathError as exc:
            raise usage(f"--write-prefix: {exc.message}", ErrorCode.ERR_WRITE_PREFIX) from None
        try:
            attachments = parse_attach(options["attach"])
        except AttachmentError as exc:
            raise usage(str(exc), ErrorCode.ERR_INPUTS) from None
        unknown = sorted(referenced(inputs) - set(attachments))
        if unknown:
            name = unknown[0]
            raise usage(
                f"--inputs-json refers to attachment {name!r}, but no --attach {name}=PATH was given",
                ErrorCode.ERR_INPUTS,
            )
        # The inputs as the processor will see them, against its schema: no container boots
        # for inputs it would refuse.
        errors = list(
            schemas.inputs_validator(spec.inputs_schema).iter_errors(
                rewrite(inputs, planned(attachments))
            )
        )
        if errors:
            raise usage(
                f"--inputs-json: {schemas.first_problem(errors, 'inputs')}", ErrorCode.ERR_INPUTS
            )
        plan = None
        if options["plan"]:
            plan = Plan.objects.filter(key=options["plan"]).first()
            if plan is None:
                raise usage(f"--plan {options['plan']}: no such plan", ErrorCode.ERR_BUDGET)
        request = RunRequest(
            spec=spec,
            inputs=inputs,
            write_prefix=prefix,
            adapter=options["adapter"],
            mode=options["mode"],
            adapter_opts=adapter_opts,
            attachments=attachments,
            plan=plan,
            stream=options["stream"],
        )
        if execution_id is not None:
            request.execution_id = execution_id
        return request

    def _save(
        self,
        store: FilesystemArtifactStore,
        request: RunRequest,
        envelope: dict[str, Any],
        options: dict[str, Any],
    ) -> None:
        outputs = sorted(envelope["outputs"], key=lambda o: o["path"])
        prefix = envelope["index_path"].removesuffix("outputs.json")
        if options["save_dir"]:
            for output in outputs:
                store.copy_out(
                    output["path"], Path(options["save_dir"]) / relpath_of(output["path"], prefix)
                )
        if options["save_first"] and outputs:
            # The first output the registry declares (its main one), not the first by path.
            first = next(
                (
                    output
                    for declared in request.spec.outputs
                    for output in outputs
                    if request.spec.declared_output(relpath_of(output["path"], prefix)) == declared
                ),
                outputs[0],
            )
            store.copy_out(first["path"], options["save_first"])

    def _summary(self, outcome: Any) -> None:
        envelope, execution = outcome.envelope, outcome.execution
        if outcome.ok:
            self.stdout.write(
                f"{execution.id}: success ({len(envelope['outputs'])} outputs, "
                f"index {envelope['index_path']})"
            )
            for output in envelope["outputs"]:
                self.stdout.write(
                    f"  {output['path']}  {output['cid']}  {output['size_bytes']} B  {output['mime']}"
                )
        else:
            self.stdout.write(
                f"{execution.id}: {envelope['error']['code']}: {envelope['error']['message']}"
            )
