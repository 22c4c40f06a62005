# The load-test client of docker/compose.yaml: scripts/loadtest.py on Debian's python3 and
# python3-requests. Build from the repository root:
#   docker build -f docker/loadtest.Dockerfile -t headshard-loadtest .
#   docker run --rm --network host headshard-loadtest --base-url http://127.0.0.1:8080 --duration 30
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-requests >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin loadtest
COPY scripts/loadtest.py /opt/loadtest/loadtest.py
USER loadtest
ENTRYPOINT ["python3", "/opt/loadtest/loadtest.py"]
