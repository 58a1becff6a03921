# syntax=docker/dockerfile:1
# Build stage: build a wheel so the runtime image carries no compiler or source tree.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: the wheel, the mapping and profile data, an unprivileged user.
FROM python:3.11-slim
# The container binds every interface, so the gateway refuses to start without partner clients:
# mount a clients file (see conf/clients.example.json) at /etc/gateway/clients.json and pass
# GATEWAY_AUTH_SIGNING_KEY (shared by every container behind one load balancer).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080 GATEWAY_DATA_DIR=/data \
    GATEWAY_MAPPINGS_DIR=/app/mappings GATEWAY_CLIENTS_FILE=/etc/gateway/clients.json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app gateway \
    && mkdir -p /data /app && chown gateway /data
COPY mappings /app/mappings
COPY profiles /app/profiles
USER 10001
WORKDIR /app
EXPOSE 8080 2575
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/fhir/metadata', timeout=4).status == 200 else 1)"]
CMD ["gateway", "serve"]
