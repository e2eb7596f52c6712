"""``manage.py run_processor``: run one processor through an adapter, recording the execution.

    manage.py run_processor --ref llm/litellm@1 --adapter local --mode mock --json \\
        --inputs-json '{"schema":"v1","params":{"model":"m","messages":[{"role":"user","content":"hi"}]}}'

With ``--json`` the envelope is the only thing on stdout; logs go to stderr as
NDJSON. Exit status: 0 for a success envelope, 1 for an error envelope, 2 for a
bad flag (nothing was run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.contracts.outputs import relpath_of
from pytest_theory.contracts.worldpath import WorldPathError, validate_write_prefix
from pytest_theory.django_project.apps.runs.attachments import (
    AttachmentError,
    parse_attach,
    referenced,
)
from pytest_theory.django_project.apps.runs.models import Plan
from pytest_theory.django_project.apps.runs.predicates import check_known
from pytest_theory.django_project.apps.runs.service import RunRequest, RunService
from pytest_theory.django_project.apps.storage.store import default_store
from pytest_theory.processors.runtime.logs import NdjsonLogger
from pytest_theory.registry import Registry, RegistryError


def usage(message: str) -> CommandError:
    return CommandError(message, returncode=2)


def json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise usage(f"{flag} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise usage(f"{flag} must be a JSON object")
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
        request = self._request(options)
        logger = NdjsonLogger("control-plane", stream=self.stderr)  # type: ignore[arg-type]
        if options["stream"]:
            request.on_event = lambda event, data: logger.log(
                f"stream.{event}", execution_id=request.execution_id, **data
            )
        service = RunService(default_store(), world_root=settings.THEORY_WORLD_ROOT, logger=logger)
        try:
            outcome = service.run(request)
        finally:
            service.close()
        if outcome.ok:
            self._save(outcome.envelope, options)
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
            raise usage(exc.message) from None
        inputs = json_object("--inputs-json", options["inputs_json"])
        adapter_opts = json_object("--adapter-opts-json", options["adapter_opts_json"])
        prefix = (
            options["write_prefix"]
            or f"/artifacts/outputs/{spec.ref.ns}-{spec.ref.name}/{{execution_id}}/"
        )
        if not prefix.endswith("/"):
            raise usage("--write-prefix must end with /")
        try:
            validate_write_prefix(prefix)
        except WorldPathError as exc:
            raise usage(f"--write-prefix: {exc.message}") from None
        try:
            attachments = parse_attach(options["attach"])
        except AttachmentError as exc:
            raise usage(str(exc)) from None
        unknown = sorted(referenced(inputs) - set(attachments))
        if unknown:
            name = unknown[0]
            raise usage(
                f"--inputs-json refers to attachment {name!r}, but no --attach {name}=PATH was given"
            )
        plan = None
        if options["plan"]:
            plan = Plan.objects.filter(key=options["plan"]).first()
            if plan is None:
                raise usage(f"--plan {options['plan']}: no such plan")
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
        if options["execution_id"]:
            request.execution_id = options["execution_id"]
        return request

    def _save(self, envelope: dict[str, Any], options: dict[str, Any]) -> None:
        store = default_store()
        outputs = sorted(envelope["outputs"], key=lambda o: o["path"])
        prefix = envelope["index_path"].removesuffix("outputs.json")
        if options["save_dir"]:
            for output in outputs:
                store.copy_out(
                    output["path"], Path(options["save_dir"]) / relpath_of(output["path"], prefix)
                )
        if options["save_first"] and outputs:
            store.copy_out(outputs[0]["path"], options["save_first"])

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
