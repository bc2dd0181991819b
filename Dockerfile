# syntax=docker/dockerfile:1
# managed-smtp worker image (the codec server runs from the same image: `npm run codec-server`).
#
#   docker build -t managed-smtp .
#   docker run --init --env-file worker.env -p 127.0.0.1:9464:9464 managed-smtp
#
# Stage 1 installs everything and builds once (dist/: the compiled JavaScript and the workflow bundle); stage 2 is the
# runtime: production dependencies only, dist/ from stage 1, a non-root user. No tsx or webpack at start.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# --ignore-scripts: npm ci's `prepare` builds, and the source is not copied in yet.
RUN npm ci --ignore-scripts
COPY . .
# dist/: the compiled JavaScript and dist/workflow-bundle.js, the exact workflow code every replica runs.
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY . .
COPY --from=build /app/dist /app/dist
# Files stay root-owned and read-only to the process; tsx keeps its cache in /tmp.
# NPM_CONFIG_SCRIPT_SHELL: npm runs scripts with `sh -c`, and Debian's dash forks instead of exec-ing the command;
# a SIGTERM sent to npm (docker stop) then kills that shell and orphans the worker, which never drains. bash execs a
# single command, so the signal reaches the worker and it shuts down gracefully (test/deploy.test.ts checks this).
# NPM_CONFIG_LOGLEVEL=silent: no `> managed-smtp@0.1.0 worker` banner, so every stdout line is one JSON log object.
ENV MANAGED_SMTP_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js \
    MANAGED_SMTP_LOG_FORMAT=json \
    NPM_CONFIG_SCRIPT_SHELL=/bin/bash \
    NPM_CONFIG_LOGLEVEL=silent
# Hardening: the container runs with a read-only root filesystem (compose: read_only, a tmpfs on /tmp), so npm's
# cache and logs go to /tmp; a numeric non-root user (node = 1000) lets Kubernetes verify runAsNonRoot.
ENV NPM_CONFIG_CACHE=/tmp/.npm \
    NPM_CONFIG_UPDATE_NOTIFIER=false
USER 1000:1000
# 9464: Prometheus metrics (when MANAGED_SMTP_METRICS_ADDRESS=0.0.0.0:9464); 8888: the codec server.
EXPOSE 9464 8888
# node directly (not npm): no npm process in the way of signals or memory; the heap limit as in `npm run worker`.
CMD ["node", "--max-old-space-size=256", "dist/worker/main.js"]
