# Shared by the discovery and test images' /init (busybox ash). Sourced, not run.
# Reads mayu.url, mayu.id and mayu.token from the kernel command line, brings the network up with
# udhcpc and talks to mayu's boot port with busybox wget (wrapped in `timeout`: bookworm's
# `wget -T` segfaults).

say() { echo "mayu-$IMAGE: $*" > /dev/console; }

early_setup() {
    /bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
    /bin/busybox mount -t proc proc /proc
    /bin/busybox mount -t sysfs sysfs /sys
    /bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
    /bin/busybox --install -s
    # Quiet kernel messages so the serial console stays readable.
    echo 1 > /proc/sys/kernel/printk 2>/dev/null || true
    for m in $(cat /etc/mayu-modules 2>/dev/null); do modprobe "$m" 2>/dev/null || true; done
}

# Sets MAYU_URL, MAYU_ID, MAYU_TOKEN, MAYU_POLL from /proc/cmdline.
read_cmdline() {
    MAYU_URL= MAYU_ID= MAYU_TOKEN= MAYU_POLL=3
    for word in $(cat /proc/cmdline); do
        case "$word" in
            mayu.url=*) MAYU_URL="${word#mayu.url=}" ;;
            mayu.id=*) MAYU_ID="${word#mayu.id=}" ;;
            mayu.token=*) MAYU_TOKEN="${word#mayu.token=}" ;;
            mayu.poll=*) MAYU_POLL="${word#mayu.poll=}" ;;
        esac
    done
    MAYU_URL="${MAYU_URL%/}"
    if [ -z "$MAYU_URL" ] || [ -z "$MAYU_ID" ] || [ -z "$MAYU_TOKEN" ]; then
        say "kernel command line lacks mayu.url, mayu.id or mayu.token: $(cat /proc/cmdline)"
        return 1
    fi
}

# NICs backed by a device (no lo, bridges or tunnels).
nics() {
    for d in /sys/class/net/*; do
        [ -e "$d/device" ] && echo "${d##*/}"
    done
}

# Brings every NIC up and asks DHCP on each until one gets a lease. Sets MAYU_IFACE.
net_up() {
    tries=0
    while :; do
        for i in $(nics); do ip link set "$i" up; done
        for i in $(nics); do
            if udhcpc -i "$i" -n -q -t 4 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1; then
                MAYU_IFACE="$i"
                say "network up on $i: $(ip -4 -o addr show dev "$i" | awk '{print $4}')"
                return 0
            fi
        done
        tries=$((tries + 1))
        say "no DHCP lease yet on: $(nics | tr '\n' ' ')(try $tries)"
        sleep 2
    done
}

# http GET|POST PATH [BODY]: prints the response body; non-zero on a transport or HTTP error.
http() {
    method="$1" path="$2" body="${3:-}"
    if [ "$method" = POST ] && [ -n "$body" ]; then
        timeout 15 wget -q -O - --header 'Content-Type: application/json' \
            --post-data "$body" "$MAYU_URL$path"
    elif [ "$method" = POST ]; then
        timeout 15 wget -q -O - --post-data '' "$MAYU_URL$path"
    else
        timeout 15 wget -q -O - "$MAYU_URL$path"
    fi
}

# Like http, but retries until it succeeds (a boot server restart must not strand a machine).
http_retry() {
    n=0
    while ! out="$(http "$@")"; do
        n=$((n + 1))
        say "$1 $2 failed (try $n); retrying"
        sleep 2
    done
    printf '%s' "$out"
}

power_off() {
    sync
    poweroff -f
}
