# cvlan-vrouter in a plain container: needs only /dev/net/tun and CAP_NET_ADMIN, no kernel modules.
#
#   docker build -t cvlan-vrouter .
#   docker run --cap-add NET_ADMIN --device /dev/net/tun -v /etc/cvlan:/etc/cvlan cvlan-vrouter run --config /etc/cvlan/tenant.json
#
# The images are parameters so the build also works from locally made bases (e.g. a debootstrapped
# bookworm imported into podman) where no registry is reachable.
ARG NODE_IMAGE=node:20-bookworm
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${RUST_IMAGE} AS rust

FROM ${NODE_IMAGE} AS build
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config bzip2 dpkg-dev libgmp-dev gperf bison flex \
      strongswan-charon \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY Cargo.toml Cargo.lock rustfmt.toml tsconfig.json ./
COPY crates crates
COPY src src
COPY test/harness test/harness
COPY bench bench
COPY native native
RUN npm run build:native && npx tsc -p tsconfig.json
# The charon plugin is compiled against the upstream source of the exact charon version installed.
RUN CVLAN_SS_NO_INSTALL=1 native/strongswan/build.sh && cp .cache/cvlan-plugin/libstrongswan-cvlan.so /src/build/
RUN npm prune --omit=dev

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables ca-certificates \
      strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cvlan-vrouter
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY --from=build /src/build/cvlan.linux-*.node build/
COPY --from=build /src/build/libstrongswan-cvlan.so /usr/lib/ipsec/plugins/libstrongswan-cvlan.so
RUN ln -s /opt/cvlan-vrouter/dist/src/cli/cvlan-vrouter.js /usr/local/bin/cvlan-vrouter \
 && ln -s /opt/cvlan-vrouter/dist/src/cli/vrouterctl.js /usr/local/bin/vrouterctl \
 && chmod +x dist/src/cli/*.js
ENTRYPOINT ["cvlan-vrouter"]
CMD ["version"]
