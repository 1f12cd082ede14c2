"""The two Envoy services behind an ``AdmissionGate`` (see extproc.admission)."""

from __future__ import annotations

import grpc

from extproc.admission import AdmissionGate
from extproc.services.authz import AuthorizationService, denied_response
from extproc.services.ext_proc import ExternalProcessorService, immediate


class AdmittedAuthorization(AuthorizationService):
    def __init__(self, store, gate: AdmissionGate):
        super().__init__(store)
        self.gate = gate

    async def Check(self, request, context):
        gate = self.gate
        if not gate.try_enter():
            return denied_response(gate.refusal, "-")
        try:
            return await super().Check(request, context)
        finally:
            gate.leave()


class AdmittedExternalProcessor(ExternalProcessorService):
    def __init__(self, store, gate: AdmissionGate):
        super().__init__(store)
        self.gate = gate

    async def Process(self, request_iterator, context):
        gate = self.gate
        if not gate.try_enter():
            # Answer the first message (Envoy sends the request headers at once)
            # and end the stream: the request gets the 503, not a timeout.
            if await context.read() is not grpc.aio.EOF:
                await context.write(immediate(gate.refusal, "-"))
            return
        counted = _CountingContext(context, gate)
        try:
            await super().Process(request_iterator, counted)
        finally:
            counted.settle()


class _CountingContext:
    """The stream's context, holding a gate slot from each message read to
    its answer written. Everything else passes straight through."""

    __slots__ = ("_context", "_gate", "_holding")

    def __init__(self, context, gate: AdmissionGate):
        self._context = context
        self._gate = gate
        self._holding = True  # the slot taken on admission covers the first message

    async def read(self):
        message = await self._context.read()
        if not self._holding and message is not grpc.aio.EOF:
            self._gate.in_flight += 1  # admitted streams are never refused midway
            self._holding = True
        return message

    async def write(self, response):
        try:
            await self._context.write(response)
        finally:
            self.settle()

    def settle(self) -> None:
        if self._holding:
            self._holding = False
            self._gate.leave()

    def __getattr__(self, name):
        return getattr(self._context, name)
