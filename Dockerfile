# redops in a container: a static-enough release binary on debian-slim,
# running as an unprivileged user. Build: docker build -t redops .
# Run:   docker run --rm -v $PWD/config:/etc/redops:ro -v redops-state:/var/lib/redops redops
# The config must say state_dir = "/var/lib/redops"; secrets come in as
# environment variables (docker run -e REDIS_PASSWORD=...).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && ./target/release/redops completions bash > /tmp/redops.bash \
 && ./target/release/redops man > /tmp/redops.1

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/redops --create-home --uid 10001 redops
COPY --from=build /src/target/release/redops /usr/bin/redops
COPY --from=build /tmp/redops.1 /usr/share/man/man1/redops.1
COPY --from=build /src/rules /usr/share/redops/rules
COPY --from=build /src/playbooks /usr/share/redops/playbooks
COPY --from=build /src/config/redops.example.toml /usr/share/redops/redops.example.toml
USER redops
WORKDIR /var/lib/redops
VOLUME ["/var/lib/redops"]
# The API listens on loopback by default; set [api] listen = "0.0.0.0:9187"
# (with a token) to reach it from outside the container.
EXPOSE 9187
ENTRYPOINT ["/usr/bin/redops"]
CMD ["run", "--config", "/etc/redops/redops.toml"]
