# Multi-stage build of the `offboard` binary; the runtime image runs as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p offboard-bot

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/offboard --create-home offboard
COPY --from=build /src/target/release/offboard /usr/local/bin/offboard
USER offboard
WORKDIR /var/lib/offboard
ENV OFFBOARD_CONFIG=/etc/offboard/offboard.toml
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s CMD ["offboard", "--help"]
ENTRYPOINT ["offboard"]
CMD ["serve"]
