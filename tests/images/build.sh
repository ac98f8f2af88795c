#!/usr/bin/env bash
# Builds Berth's test images locally, FROM scratch plus Debian's static
# busybox: no registry is involved anywhere.
#
#   berth-test/web:v1, :v2   HTTP on $PORT (default 8000): / answers the
#                            version, /health answers "ok"
#   berth-test/unhealthy     the same server without /health, so a health
#                            check of `wget -q -O- localhost:$PORT/health` fails
#   berth-test/job           sleeps $DELAY seconds (default 1), exits $EXIT_CODE
#   berth-test/memhog        doubles a string until the kernel kills it
#   berth-test/next-api      the seed's Fargate service stand-in: web on
#                            $PORT whose /env answers $ENV
set -euo pipefail

if [[ ! -x /bin/busybox ]] || ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static file >/dev/null
    else
        echo "build.sh: needs Debian's busybox-static (/bin/busybox)" >&2
        exit 2
    fi
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp /bin/busybox "$context/busybox"

build() { # tag, Dockerfile body appended to the busybox base
    local tag=$1 body=$2
    {
        echo 'FROM scratch'
        echo 'COPY busybox /bin/busybox'
        echo 'RUN ["/bin/busybox", "--install", "-s", "/bin"]'
        echo 'ENV PATH=/bin'
        printf '%s\n' "$body"
    } >"$context/Dockerfile"
    # The engine's legacy-builder notice goes to stderr on every build; show
    # stderr only when the build fails.
    if ! docker build -q -t "$tag" "$context" >/dev/null 2>"$context/build.err"; then
        cat "$context/build.err" >&2
        exit 1
    fi
    echo "built $tag"
}

web() { # tag, command that adds /health (or nothing), version
    # A shell stays PID 1 and exits 0 on SIGTERM, as a well-behaved server
    # does; httpd alone would ignore SIGTERM and be killed after stopTimeout.
    build "$1" "ENV VERSION=${3} PORT=8000
CMD [\"sh\", \"-c\", \"mkdir -p /www; echo \\\"\$VERSION\\\" > /www/index.html; ${2} trap 'kill \$pid; exit 0' TERM; httpd -f -p \$PORT -h /www & pid=\$!; wait \$pid\"]"
}

web berth-test/web:v1 'echo ok > /www/health;' v1
web berth-test/web:v2 'echo ok > /www/health;' v2
web berth-test/unhealthy '' unhealthy
web berth-test/next-api 'echo ok > /www/health; echo $ENV > /www/env;' next-api
build berth-test/job 'ENV DELAY=1 EXIT_CODE=0
CMD ["sh", "-c", "sleep $DELAY; exit $EXIT_CODE"]'
build berth-test/memhog 'CMD ["sh", "-c", "x=0123456789; while true; do x=$x$x; done"]'
