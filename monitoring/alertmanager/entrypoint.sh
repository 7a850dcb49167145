#!/bin/sh
# Docker entrypoint of Alertmanager: render alertmanager.yml (a template) from the
# environment, then run Alertmanager with any arguments given. POSIX sh and awk only, so
# it runs in the busybox-based prom/alertmanager image. moked.stack.monitoring renders the
# same template natively, quoting values the same way (tests/monitoring checks they agree).
#
#   entrypoint: ["/etc/alertmanager/entrypoint.sh"]
#   command: ["--storage.path=/alertmanager"]
set -eu
here=$(dirname "$0")
template=${ALERTMANAGER_TEMPLATE:-$here/alertmanager.yml}
config=${ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}

umask 077  # the rendered file may hold the SMTP password
awk '
{
    line = $0
    out = ""
    while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*\}/)) {
        name = substr(line, RSTART + 2, RLENGTH - 3)
        if (!(name in ENVIRON)) {
            printf "alertmanager: %s is not set (see .env.example)\n", name > "/dev/stderr"
            failed = 1
            exit 1
        }
        value = ENVIRON[name]
        if (index(value, "\n") || index(value, "\r")) {
            printf "alertmanager: %s must be one line\n", name > "/dev/stderr"
            failed = 1
            exit 1
        }
        gsub(/\047/, "\047\047", value)
        out = out substr(line, 1, RSTART - 1) value
        line = substr(line, RSTART + RLENGTH)
    }
    print out line
}
END { if (failed) exit 1 }
' "$template" > "$config"

if [ "${1:-}" = "--render-only" ]; then
    cat "$config"
    exit 0
fi
exec alertmanager --config.file="$config" "$@"
