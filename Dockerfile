# flowsentry: build stage compiles TypeScript; the runtime stage has production dependencies only and
# runs as the image's unprivileged `node` user. glibc (Debian) base: chDB ships no musl (Alpine) build.
#   docker build -t flowsentry .
#   docker run -p 2055:2055/udp -p 4739:4739/udp -p 8080:8080 -e CLICKHOUSE_URL=http://clickhouse:8123 flowsentry
FROM node:20.19.0-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# Lifecycle scripts off (package.json allowScripts: none is needed); then build dist/ explicitly.
RUN npm ci --ignore-scripts --no-audit --no-fund && npm run build

FROM node:20.19.0-bookworm-slim
ENV NODE_ENV=production \
    FLOWSENTRY_DATA_DIR=/var/lib/flowsentry \
    FLOWSENTRY_LISTEN_UDP=0.0.0.0:2055,0.0.0.0:4739 \
    FLOWSENTRY_LISTEN_HTTP=0.0.0.0:8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY migrations ./migrations
COPY dashboards ./dashboards
# The spool, persisted templates (and the embedded store when CLICKHOUSE_URL is not set) live here.
RUN mkdir -p /var/lib/flowsentry && chown node:node /var/lib/flowsentry
VOLUME /var/lib/flowsentry
USER node
EXPOSE 2055/udp 4739/udp 8080/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve"]
