#!/bin/sh
# Generate a config into /data on first start (listening on all interfaces inside the
# container), then run Hearth. SIGTERM from `docker stop` reaches Hearth through exec.
set -eu
if [ ! -f /data/homeserver.yaml ]; then
    hearth generate-config --server-name "$SERVER_NAME" --data-dir /data --bind-address 0.0.0.0 \
        ${PUBLIC_BASEURL:+--public-baseurl "$PUBLIC_BASEURL"}
fi
exec hearth run -c /data/homeserver.yaml
