# cvlan-vrouter in a plain container: needs only /dev/net/tun and CAP_NET_ADMIN, no kernel modules.
#
#   docker build -t cvlan-vrouter .
#   docker run -d --name cvlan --cap-add NET_ADMIN --device /dev/net/tun \
#     --read-only --tmpfs /run -v cvlan-state:/var/lib/cvlan -v /etc/cvlan:/etc/cvlan:ro \
#     --sysctl net.ipv4.ip_forward=1 -p 500:500/udp -p 4500:4500/udp -p 51820:51820/udp cvlan-vrouter
#
# Add `--cap-add NET_RAW` only for raw ESP (`esp_encapsulation = "auto"`); without it every
# CHILD_SA uses ESP-in-UDP. /var/lib/cvlan holds the secrets key, generated WireGuard keys and the
# last applied configuration: keep it on a volume. docs/deployment.md explains every flag.
#
# The images are parameters so the build also works from locally made bases (e.g. a debootstrapped
# bookworm imported into podman, deploy/container/local-base.sh) where no registry is reachable.
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
# Only what runs: production dependencies, this platform's prebuilt binaries, no debug info.
RUN npm prune --omit=dev --no-audit --no-fund \
 && find node_modules -type d -name prebuilds -prune -exec sh -c 'for d; do find "$d" -mindepth 1 -maxdepth 1 ! -name "linux-x64*" -exec rm -rf {} +; done' sh {} + \
 && strip --strip-debug build/cvlan.linux-*.node build/libstrongswan-cvlan.so

# The runtime stage takes the built files from the `build` stage. A build context of that name
# (`--build-context build=docker-image://IMAGE`, files under /src) replaces the stage: the
# container test builds them on its host once instead of compiling Rust inside the build.
FROM ${RUNTIME_IMAGE}
# iproute2: addresses and routes of the TUN devices; wg: the WireGuard interfaces are managed with
# wg(8); charon + swanctl + the plugin packages PLUGINS_CVLAN names (openssl, eap-*).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 ca-certificates wireguard-tools \
      strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
WORKDIR /opt/cvlan-vrouter
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist/src dist/src
COPY --from=build /src/dist/test/harness dist/test/harness
COPY --from=build /src/build/cvlan.linux-*.node build/
COPY --from=build /src/build/libstrongswan-cvlan.so /usr/lib/ipsec/plugins/libstrongswan-cvlan.so
COPY deploy/container/swanctl.conf /etc/strongswan.d/cvlan-swanctl.conf
COPY deploy/container/healthcheck.mjs /usr/local/lib/cvlan/healthcheck.mjs
RUN ln -s /opt/cvlan-vrouter/dist/src/cli/cvlan-vrouter.js /usr/local/bin/cvlan-vrouter \
 && ln -s /opt/cvlan-vrouter/dist/src/cli/vrouterctl.js /usr/local/bin/vrouterctl \
 && chmod +x dist/src/cli/*.js \
 && mkdir -p /etc/cvlan /var/lib/cvlan && chmod 0700 /var/lib/cvlan
VOLUME ["/var/lib/cvlan"]
EXPOSE 500/udp 4500/udp 51820/udp
# Ready = the admin API answers /readyz with 200 (configuration applied, charon up).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["node", "/usr/local/lib/cvlan/healthcheck.mjs"]
ENTRYPOINT ["cvlan-vrouter"]
CMD ["run", "--config", "/etc/cvlan/config.json"]
