# syntax=docker/dockerfile:1
# The tcpmax image: a release build on Debian bookworm, run on distroless
# (glibc, no shell, non-root user 65532). From the repository root:
#
#   docker build -t registry.example.com/tcpmax:0.1.0 \
#     --build-arg COMMIT=$(git rev-parse --short=12 HEAD) .
#
# The manifests in deploy/kubernetes run it as `tcpmax serve` and as the
# `tcpmax load` agents of an Indexed Job.

FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# Cargo.toml names the benchmark programs: the manifest needs them present.
COPY benches ./benches
# Reports record the commit; the build context has no .git.
ARG COMMIT=unknown
ENV TCPMAX_COMMIT=${COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tcpmax \
    && cp target/release/tcpmax /usr/local/bin/tcpmax

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/tcpmax /usr/local/bin/tcpmax
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tcpmax"]
CMD ["--help"]
