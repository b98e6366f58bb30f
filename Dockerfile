# mcp-mesh image: the sidecar (`sidecar --config …`, the default command) and the injector
# (`injector --cert … --key … --port 9443`). The sources are TypeScript run directly by Node 24
# (type stripping): no build step (the sidecar reads them pre-stripped from a cache filled below).
# test/integration/image-entrypoint.test.ts reads the COPY lines of the final stage, installs the same
# files the same way and runs the same command, so keep COPY sources literal.

# Stage 1: production dependencies only. --ignore-scripts: no install script runs (lz4-napi ships
# prebuilt binaries as optional dependencies; the `node` dev dependency is omitted with dev deps).
FROM node:24-bookworm-slim AS deps
WORKDIR /opt/mcp-mesh
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# Stage 2: runtime. tini is PID 1: it forwards SIGTERM/SIGINT to Node (whose handlers drain the sidecar
# and exit 0) and reaps zombies, which Node as PID 1 would not.
FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /opt/mcp-mesh
COPY --from=deps /opt/mcp-mesh/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY sidecar/src ./sidecar/src
COPY policies ./policies
# The sources with their types stripped ahead of time (bin/js-cache.js): the sidecar then never loads
# Node's TypeScript stripper, about 30 MB of resident memory (README "Performance").
RUN node bin/js-cache.js
# Outbound (app → sidecar), inbound (MCP from peers), admin; the injector's webhook port.
EXPOSE 15001 15002 15000 9443
# uid/gid 1000 ("node" in the base image); the chart and manifests set runAsUser 1000 and runAsNonRoot.
USER 1000:1000
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/mcp-mesh.js"]
CMD ["sidecar", "--config", "/etc/mcp-mesh/mesh.yaml"]
