# c42fwd container image: a Rust builder stage, then a Debian slim runtime that runs the
# binary as an unprivileged user with the checkpoints on a volume.
#
#   docker build -t c42fwd .
#   docker run -v c42fwd-state:/var/lib/c42fwd \
#     -v $PWD/c42fwd.toml:/etc/c42fwd/c42fwd.toml:ro \
#     -v $PWD/client_secret:/etc/c42fwd/secrets/client_secret:ro c42fwd

FROM rust:1-slim-bookworm AS builder
WORKDIR /src
# librdkafka (the Kafka sink) is compiled from source: make, g++ (its make builds the
# C++ wrapper too), pkg-config, the OpenSSL headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p c42fwd --bin c42fwd

FROM debian:bookworm-slim
# The system trust store, for TLS to the Code42 API and to TLS sinks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 c42fwd \
    && useradd --system --uid 10001 --gid c42fwd --home-dir /var/lib/c42fwd \
       --no-create-home --shell /usr/sbin/nologin c42fwd \
    && install -d -o c42fwd -g c42fwd -m 0750 /var/lib/c42fwd \
    && install -d -m 0755 /etc/c42fwd /etc/c42fwd/secrets
COPY --from=builder /src/target/release/c42fwd /usr/bin/c42fwd
COPY deploy/container/c42fwd.toml /etc/c42fwd/c42fwd.toml
# A placeholder secret, so that the default configuration validates; mount the real one.
RUN printf 'replace-with-the-api-client-secret\n' >/etc/c42fwd/secrets/client_secret \
    && chown root:c42fwd /etc/c42fwd/secrets/client_secret \
    && chmod 0640 /etc/c42fwd/secrets/client_secret \
    && /usr/bin/c42fwd validate --config /etc/c42fwd/c42fwd.toml

USER 10001:10001
VOLUME ["/var/lib/c42fwd"]
EXPOSE 9842
ENV C42FWD_CONFIG=/etc/c42fwd/c42fwd.toml
# Liveness: GET /health on the metrics listener, with bash's /dev/tcp (no curl in the
# image). Readiness is /ready (for orchestrators that distinguish them).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9842 && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/bin/c42fwd"]
CMD ["run", "--log-format", "json"]
