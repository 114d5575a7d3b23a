# syntax=docker/dockerfile:1
# One image for all four services; the command picks the service (docker-compose.yml and the
# Helm chart in deploy/helm set it). Your handlers go in an image built FROM this one:
# deploy/examples/handlers/Dockerfile. No Docker engine runs on the development machines, so
# `make deploy-check` checks this file's sources against .dockerignore instead of building it.

FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/jobline
ENV PATH=/opt/jobline/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
COPY libs/common libs/common
COPY services services
# The one place that says which packages the image holds (same pins as `make install`).
ARG JOBLINE_PACKAGES="./libs/common[cli] ./services/gateway ./services/outbox-relay ./services/worker ./services/ai-analyzer"
RUN pip install -c constraints.txt pip setuptools wheel \
 && pip install --no-build-isolation -c constraints.txt $JOBLINE_PACKAGES

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/jobline/bin:$PATH \
    JOBLINE_ENV=prod JOBLINE_HTTP_HOST=0.0.0.0 JOBLINE_DATA_DIR=/tmp/jobline
COPY --from=build /opt/jobline /opt/jobline
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/jobline-healthcheck
RUN groupadd --system --gid 10001 jobline \
 && useradd --system --uid 10001 --gid jobline --no-create-home jobline
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001 8002 8003
CMD ["python", "-m", "jobline_gateway"]
