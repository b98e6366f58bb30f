# mcp-mesh sidecar image. The sources are TypeScript run directly by Node 24 (type stripping):
# no build step, the image holds the repository's runtime files and production dependencies.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /opt/mcp-mesh
COPY package.json package-lock.json ./
# The `node` dev dependency (which pins Node 24 for development) is not needed: the image has Node 24.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY bin ./bin
COPY sidecar/src ./sidecar/src
COPY policies ./policies
# Outbound (app → sidecar), inbound (MCP from peers), admin.
EXPOSE 15001 15002 15000
USER node
ENTRYPOINT ["node", "bin/mcp-mesh.js"]
CMD ["sidecar", "--config", "/etc/mcp-mesh/mesh.yaml"]
