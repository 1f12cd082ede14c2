"""The two Envoy services behind an ``AdmissionGate`` (see extproc.admission)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from extproc.admission import AdmissionGate
from extproc.policy.store import PolicyStore
from extproc.services.authz import AuthorizationService, denied_response
from extproc.services.ext_proc import ExternalProcessorService, immediate


class AdmittedAuthorization(AuthorizationService):
    def __init__(self, store: PolicyStore, gate: AdmissionGate) -> None:
        super().__init__(store)
        self.gate = gate

    async def Check(
        self, request: authz_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> authz_pb2.CheckResponse:
        gate = self.gate
        if not gate.try_enter(context.time_remaining()):
            return denied_response(gate.refusal, "-")
        try:
            return await super().Check(request, context)
        finally:
            gate.leave()


class AdmittedExternalProcessor(ExternalProcessorService):
    def __init__(self, store: PolicyStore, gate: AdmissionGate) -> None:
        super().__init__(store)
        self.gate = gate

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> None:
        gate = self.gate
        if not gate.try_enter():
            # Answer the first message (Envoy sends the request headers at once)
            # and end the stream: the request gets the 503, not a timeout.
            if await context.read() is not grpc.aio.EOF:
                await context.write(immediate(gate.refusal, "-"))
            return
        try:
            await super().Process(request_iterator, context)
        finally:
            gate.leave()
