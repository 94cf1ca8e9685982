# The demo AS (node oidc-provider, envoy/as/server.mjs) for envoy/docker-compose.yaml, as `make run`
# runs it. NOT exercised in CI (no Docker engine there). Build context: the repository root.
FROM node:20-bookworm-slim
WORKDIR /as
COPY envoy/as/package.json envoy/as/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY envoy/as/server.mjs ./
EXPOSE 18080 18082
# `--host 0.0.0.0`: reachable from the Envoy container (outside containers it binds 127.0.0.1).
CMD ["node", "server.mjs", "--port", "18080", "--admin-port", "18082", "--host", "0.0.0.0"]
