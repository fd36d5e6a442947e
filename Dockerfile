# Multi-stage build of the operator image.
# Build stage: the same release build CI runs (`cargo build --release --locked`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
RUN cargo build --release --locked --bin zerotrust-operator

# Runtime stage: distroless, no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/zerotrust-operator /usr/local/bin/zerotrust-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zerotrust-operator"]
CMD ["run"]
