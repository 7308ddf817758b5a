# tsrevel in a container: the package installed from this checkout, run as a non-root user.
#   docker build -t tsrevel .
#   docker run --rm -p 8080:8080 -v tsrevel-var:/app/var tsrevel
# Then: curl http://127.0.0.1:8080/health. Recipes (compose, Render, systemd): docs/deployment.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080 \
    TSREVEL_DATABASE_URL=sqlite:////app/var/tsrevel.db \
    TSREVEL_MAPPING_FILE=/app/examples/mapping.toml

WORKDIR /app

# A system user with a fixed uid, so a mounted volume can be given to it (chown 10001).
RUN groupadd --system --gid 10001 tsrevel \
 && useradd --system --uid 10001 --gid tsrevel --home-dir /app --no-create-home --shell /usr/sbin/nologin tsrevel

COPY pyproject.toml README.md ./
COPY src ./src
COPY examples ./examples
RUN pip install . \
 && mkdir -p /app/var \
 && chown tsrevel:tsrevel /app/var

USER tsrevel
# The SQLite database (and anything else tsrevel keeps on disk) lives here; keep it on a volume.
VOLUME ["/app/var"]
EXPOSE 8080

# /ready: 200 once migrations are applied and the store takes writes. python, since slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8080'), timeout=4).status == 200 else 1)"]

# Shell form through `exec`: $PORT is expanded (Render and most platforms set it) and tsrevel is PID 1,
# so SIGTERM reaches it and it drains before exiting 0. The host and port are passed explicitly.
CMD ["sh", "-c", "exec tsrevel serve --host 0.0.0.0 --port \"${PORT:-8080}\""]
