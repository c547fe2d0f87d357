# imagepipe: one image for every role (api, worker, beat, migrate); the command picks it.
# Plain Dockerfile syntax (no BuildKit-only features), so the legacy builder works too.
FROM python:3.12-slim

# MALLOC_ARENA_MAX: glibc makes up to 8 malloc arenas per core, and Pillow's large
# buffers fragment every one of them; two keep worker memory flat.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MALLOC_ARENA_MAX=2 \
    IMAGEPIPE_DATA_DIR=/data

# A fixed uid, so a named volume created from /data (copied with its owner on first
# use) stays writable across rebuilds. With S3 storage /data holds only scratch
# (beat's schedule); with local files, the originals and previews too.
RUN groupadd --gid 10001 imagepipe \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin imagepipe \
 && mkdir -p /data/storage \
 && chown -R 10001:10001 /data

# Runtime metadata first: it never changes with the code, so a code change rebuilds
# only the last few layers. The healthcheck is the api role's; compose gives the
# worker and beat their own and turns it off for migrate.
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/imagepipe-healthcheck", "http"]
CMD ["imagepipe", "api", "--host", "0.0.0.0", "--port", "8000"]

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# Every pinned dependency has a manylinux wheel, so no compiler is installed.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Then the package itself (its dependencies are already there).
# README.md* : pyproject.toml names it, and the glob lets a tree without it still build.
COPY pyproject.toml README.md* ./
COPY src ./src
RUN pip install --no-deps . \
 && rm -rf build src/*.egg-info

COPY docker/healthcheck.py /usr/local/bin/imagepipe-healthcheck
COPY docker/db_setup.py /usr/local/bin/imagepipe-db-setup
USER 10001:10001
