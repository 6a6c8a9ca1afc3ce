# goodfaith: one image for every process (api, worker, scheduler, simulator, db upgrade).
#   docker build -t goodfaith .   then   docker run --rm goodfaith --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every dependency ships manylinux wheels (pikepdf, psycopg[binary], reportlab, cryptography),
# so no compiler is needed. The source is installed, then removed: the image runs the package.
COPY pyproject.toml README.md /tmp/src/
COPY config /tmp/src/config
COPY connectors /tmp/src/connectors
COPY storage /tmp/src/storage
COPY worker /tmp/src/worker
COPY api /tmp/src/api
COPY simulator /tmp/src/simulator
RUN pip install /tmp/src && rm -rf /tmp/src

RUN useradd --create-home --uid 10001 --user-group goodfaith \
    && mkdir -p /app/var \
    && chown -R goodfaith:goodfaith /app
WORKDIR /app
USER goodfaith

EXPOSE 8000 8100
ENTRYPOINT ["goodfaith"]
CMD ["--help"]
