#!/usr/bin/env bash
# mayu's network-boot lab: QEMU machines (BIOS and UEFI, every boot path) network-boot through
# mayu's dnsmasq child and boot HTTP on an isolated network, so mayu can be tried without hardware.
#
#   sudo scripts/lab.sh deps              install the Debian packages the lab and its tests need
#   sudo scripts/lab.sh up [--vms N]      namespace + bridge, mayu headless, N machines booting
#   sudo scripts/lab.sh up --console      the same, with mayu's console in this terminal
#   sudo scripts/lab.sh up --install      also machine `vmi`, which installs to its own disk
#   sudo scripts/lab.sh install-vm        power `vmi` on again: mayu hands it `sanboot` of its disk
#   sudo scripts/lab.sh bmc N ARGS...     ipmitool against machine N's BMC (e.g. `bmc 0 power status`)
#   sudo scripts/lab.sh status            what runs, where each machine is
#   sudo scripts/lab.sh ctl ARGS...       mayuctl against the lab's API (e.g. `ctl list`)
#   sudo scripts/lab.sh serial N          follow machine N's serial console
#   sudo scripts/lab.sh down [--keep]     stop everything it started, remove the namespace
#                                         (--keep leaves lab/ with logs and inventory)
#
# Everything lives in the network namespace `mayu-lab` (MAYU_LAB_NS to change): a bridge br0 with
# 10.77.0.1/24 and a ULA, one tap per machine, no uplink, no NAT, no route out. State, logs and
# pids go to <repo>/lab/ (MAYU_LAB_DIR to change). Processes are stopped by the pids recorded at
# start, never by name.
#
# Every machine has a real BMC: OpenIPMI's ipmi_sim answers IPMI-over-LAN at 10.77.0.(20+N),
# UDP 623, inside the namespace (machine vmi at 10.77.0.19), user `admin`, the password in
# lab/bmc.password (mayu's credentials file: lab/bmc-secrets.yaml, mode 0600). ipmi_sim starts
# the machine (its power-on runs lab/vmN.start.sh) and talks to QEMU's ipmi-bmc-extern device,
# so `chassis power off|on|cycle|reset` really stop, start and reset the VM.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB="${MAYU_LAB_DIR:-$REPO/lab}"
NS="${MAYU_LAB_NS:-mayu-lab}"
CONFIG="$REPO/scripts/lab-config.yaml"
# What mayu runs with: lab-config.yaml with its paths made absolute, plus power control over the
# lab's BMCs (the credentials file exists only while the lab does).
RUN_CONFIG="$LAB/config.yaml"
ADDR=10.77.0.1
ULA=fd77:77::1/64
BOOT_PORT=4081
API_URL=http://127.0.0.1:4080
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
BMC_USER=admin
BMC_PORT=623

die() { echo "lab: error: $*" >&2; exit 1; }
say() { echo "lab: $*" >&2; }

need_root() {
    [[ $(id -u) == 0 ]] || die "run as root (network namespaces, taps): sudo $0 $*"
}

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

# --- deps --------------------------------------------------------------------------------------

# The packages come from Debian only; scripts/install-deps.sh (shared with CI) knows which, and
# takes qemu-system-x86 from bookworm-backports on Debian 12.
cmd_deps() {
    need_root deps
    "$REPO/scripts/install-deps.sh"
}

# --- helpers -----------------------------------------------------------------------------------

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; }

# pid_alive PIDFILE MARKER: the recorded process runs and its command line holds MARKER (so a
# reused pid is never mistaken for ours).
pid_alive() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# stop_pid PIDFILE MARKER: TERM, up to 10 s, then KILL.
stop_pid() {
    local file="$1" marker="$2" pid i
    pid_alive "$file" "$marker" || { rm -f "$file"; return 0; }
    pid="$(cat "$file")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$file" "$marker" || break
        sleep 0.1
    done
    if pid_alive "$file" "$marker"; then
        say "pid $pid did not stop on TERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

mayu_bin() {
    if [[ -n ${MAYU_BIN:-} ]]; then
        [[ -x $MAYU_BIN ]] || die "MAYU_BIN=$MAYU_BIN is not an executable"
        echo "$MAYU_BIN"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    if [[ ${NO_BUILD:-0} != 1 ]]; then
        command -v cargo >/dev/null || die "cargo not found; set MAYU_BIN to a built mayu binary"
        # The features scripts/test.sh builds with, so the lab and the tests share one build.
        say "building mayu (cargo build -p mayu-console --features etcd --bin mayu)"
        (cd "$REPO" && cargo build -q -p mayu-console --features etcd --bin mayu) >&2 ||
            die "cargo build failed"
    fi
    [[ -x $target/debug/mayu ]] || die "$target/debug/mayu not found; build it or set MAYU_BIN"
    echo "$target/debug/mayu"
}

mayuctl_bin() {
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    if [[ -n ${MAYUCTL_BIN:-} ]]; then echo "$MAYUCTL_BIN"; return; fi
    if [[ ! -x $target/debug/mayuctl ]]; then
        (cd "$REPO" && cargo build -q -p mayu --features etcd --bin mayuctl) >&2 ||
            die "cargo build mayuctl failed"
    fi
    echo "$target/debug/mayuctl"
}

check_tools() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v busybox >/dev/null || missing+=(busybox-static)
    command -v cpio >/dev/null || missing+=(cpio)
    [[ -f /usr/lib/ipxe/undionly.kpxe ]] || missing+=(ipxe)
    [[ -f /usr/lib/ipxe/qemu/efi-virtio.rom ]] || missing+=(ipxe-qemu)
    [[ -f $OVMF_CODE ]] || missing+=(ovmf)
    command -v ipmi_sim >/dev/null || missing+=(openipmi)
    command -v ipmitool >/dev/null || missing+=(ipmitool)
    if ((${#missing[@]})); then
        die "missing packages: ${missing[*]}; install them with: sudo $0 deps"
    fi
}

# auto: KVM only where the CPU really has hardware virtualisation (a /dev/kvm backed by a
# software module crawls or aborts with -cpu host).
accel_args() {
    case "$1" in
        kvm) echo "-accel kvm -cpu host" ;;
        tcg) echo "-accel tcg -cpu max" ;;
        auto)
            if [[ -w /dev/kvm ]] && grep -Eqw 'vmx|svm' /proc/cpuinfo; then
                echo "-accel kvm -cpu host"
            else
                echo "-accel tcg -cpu max"
            fi
            ;;
        *) die "--accel takes auto, kvm or tcg; got '$1'" ;;
    esac
}

net_up() {
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge
    ip -n "$NS" addr add "$ADDR/24" dev br0
    # iPXE waits ~13 s for IPv6 autoconfiguration unless a router advertisement comes; mayu's
    # dnsmasq advertises this ULA (router lifetime 0). It never leaves the namespace.
    ip -n "$NS" addr add "$ULA" dev br0
    ip -n "$NS" link set br0 up
}

add_tap() {
    ip -n "$NS" tuntap add dev "$1" mode tap
    ip -n "$NS" link set "$1" master br0
    ip -n "$NS" link set "$1" up
}

# The repository's own script fills the TFTP root from Debian's ipxe package (the HTTP boot
# machines get the same files from the boot port). dnsmasq serves only world-readable files
# from a root whose folders are all traversable.
fill_tftproot() {
    "$REPO/scripts/fill-tftproot.sh" "$LAB/tftproot" >/dev/null
    local d="$LAB"
    while [[ $d != / ]]; do
        if [[ $(stat -c '%A' "$d") != ?????????[xt] ]]; then
            say "warning: $d is not world-traversable; dnsmasq (user nobody) cannot serve TFTP from $LAB/tftproot"
        fi
        d="$(dirname "$d")"
    done
}

wait_boot_port() {
    local i
    for ((i = 0; i < 300; i++)); do
        if ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$ADDR/$BOOT_PORT" 2>/dev/null; then
            return 0
        fi
        pid_alive "$LAB/pids/mayu.pid" "--config" || return 1
        sleep 0.2
    done
    return 1
}

# bmc_addr N: machine N's BMC address (N = i: the install machine).
bmc_addr() {
    if [[ $1 == i ]]; then echo 10.77.0.19; else echo "10.77.0.$((20 + $1))"; fi
}

# bmc_vm_port N: where machine N's ipmi_sim waits for QEMU's BMC link (namespace loopback).
bmc_vm_port() {
    if [[ $1 == i ]]; then echo 9099; else echo "$((9000 + $1))"; fi
}

# One BMC password per lab, and mayu's credentials file for it (mode 0600: mayu refuses others).
make_bmc_secrets() {
    (umask 077
        head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$LAB/bmc.password"
        printf 'default: { user: %s, password: "%s", port: %s }\n' \
            "$BMC_USER" "$(cat "$LAB/bmc.password")" "$BMC_PORT" >"$LAB/bmc-secrets.yaml")
}

# The lab config as mayu runs it (see RUN_CONFIG).
make_run_config() {
    sed "s#\.\./#$REPO/#" "$CONFIG" >"$RUN_CONFIG"
    cat >>"$RUN_CONFIG" <<YAML
# Power control over the lab machines' BMCs (lab.sh writes this part; see lab.sh status).
power:
  secrets: $LAB/bmc-secrets.yaml
  timeout: 10s
  poll: 10s
YAML
}

# start_bmc N ARGS...: writes machine N's start script (QEMU with ARGS plus the BMC link) and
# starts its ipmi_sim in the namespace, which powers the machine on at once (startnow).
start_bmc() {
    local n="$1"; shift
    local dir="$LAB/bmc/vm$n" addr port
    addr="$(bmc_addr "$n")"
    port="$(bmc_vm_port "$n")"
    mkdir -p "$dir/state"
    {
        echo '#!/bin/sh'
        echo "# machine vm$n as its BMC powers it on; exec: ipmi_sim watches QEMU itself"
        printf 'exec qemu-system-x86_64'
        printf ' %q' "$@" -chardev "socket,id=ipmi0,host=127.0.0.1,port=$port,reconnect=10" \
            -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0 \
            -pidfile "$LAB/pids/vm$n.pid"
        printf ' >>%q 2>&1\n' "$LAB/vm$n.qemu.log"
    } >"$LAB/vm$n.start.sh"
    chmod 0755 "$LAB/vm$n.start.sh"
    (umask 077
        cat >"$dir/lan.conf" <<CONF
name "vm$n"
set_working_mc 0x20
  startlan 1
    addr $addr $BMC_PORT
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcd$(printf '%02x' "$(( $(printf '%d' "'$n") % 256 ))")
  endlan
  serial 15 127.0.0.1 $port codec VM
  startcmd "$LAB/vm$n.start.sh"
  startnow true
  poweroff_wait 10
  kill_wait 5
  user 2 true "$BMC_USER" "$(cat "$LAB/bmc.password")" admin 10 md5
CONF
    )
    cat >"$dir/bmc.emu" <<'EMU'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EMU
    ip -n "$NS" addr add "$addr/24" dev br0 2>/dev/null || true
    : >"$LAB/vm$n.qemu.log"
    ip netns exec "$NS" ipmi_sim -c "$dir/lan.conf" -f "$dir/bmc.emu" -s "$dir/state" -n \
        >"$LAB/bmc$n.log" 2>&1 &
    echo $! >"$LAB/pids/bmc$n.pid"
}

# bmc_ipmitool N ARGS...: ipmitool against machine N's BMC from inside the namespace.
bmc_ipmitool() {
    local n="$1"; shift
    IPMI_PASSWORD="$(cat "$LAB/bmc.password")" ip netns exec "$NS" timeout 15 ipmitool -I lanplus \
        -C 3 -N 2 -R 2 -H "$(bmc_addr "$n")" -p "$BMC_PORT" -U "$BMC_USER" -E "$@" </dev/null
}

# start_vm I ACCEL MEM: machine I; machine 0 has two disks. The machines take every network
# boot path QEMU can play, in turn (I mod 4), and vmI.firmware records which:
#   0  BIOS (SeaBIOS), the NIC's iPXE ROM → DHCP as iPXE → boot.ipxe
#   1  UEFI firmware PXE (OVMF's own client, no ROM on the NIC) → TFTP ipxe.efi → iPXE: the path
#      of most real servers
#   2  UEFI HTTP boot (OVMF with its PXE clients off) → http://…/boot/ipxe.efi → iPXE, no TFTP
#   3  UEFI, the NIC's iPXE ROM
# Plain BIOS PXE (undionly.kpxe) cannot be played: every PXE ROM QEMU has is iPXE already.
start_vm() {
    local i="$1" accel="$2" mem="$3" fw mac rom=""
    mac="$(printf '52:54:00:77:00:%02x' "$i")"
    ((i % 4 == 1 || i % 4 == 2)) && rom=",romfile="
    local args=(-name "mayu-lab-vm$i" $accel -m "$mem" -smp 1
        -nodefaults -no-user-config -display none -vga none -monitor none
        -serial "file:$LAB/vm$i.serial.log"
        -uuid "$(printf '6d617975-6c61-4200-8000-%012x' "$i")"
        -smbios "type=1,manufacturer=mayu-lab,product=lab-vm,serial=LAB-$(printf '%04d' "$i")"
        -netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no"
        -device "virtio-net-pci,netdev=n0,mac=$mac,bootindex=1$rom"
        -blockdev "driver=null-co,node-name=d0,size=$((8 << 30)),read-zeroes=on"
        -device "virtio-blk-pci,drive=d0,serial=lab$i-0")
    if ((i == 0)); then
        args+=(-blockdev "driver=null-co,node-name=d1,size=$((16 << 30)),read-zeroes=on"
            -device "virtio-blk-pci,drive=d1,serial=lab$i-1")
    fi
    if ((i % 4 == 0)); then
        fw="BIOS, iPXE ROM"
        printf '\xf8\x03' >"$LAB/sercon"
        args+=(-boot order=n,strict=on -fw_cfg "name=etc/sercon-port,file=$LAB/sercon")
    else
        case $((i % 4)) in
            1) fw="UEFI, firmware PXE + TFTP ipxe.efi" ;;
            2) fw="UEFI, HTTP boot (no TFTP)"
               args+=(-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n
                   -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n) ;;
            3) fw="UEFI, iPXE ROM" ;;
        esac
        cp "$OVMF_VARS" "$LAB/vm$i.vars.fd"
        args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
            -drive "if=pflash,format=raw,unit=1,file=$LAB/vm$i.vars.fd")
    fi
    add_tap "tap$i"
    : >"$LAB/vm$i.serial.log"
    # No -no-reboot: discovery reboots into the assigned profile through PXE again. The BMC
    # starts QEMU (it writes its own pid file), and starts it again on power on.
    start_bmc "$i" "${args[@]}"
    echo "$fw" >"$LAB/vm$i.firmware"
    say "vm$i: $fw, mac $mac, serial console $LAB/vm$i.serial.log, BMC $(bmc_addr "$i"):$BMC_PORT"
}

# start_install_vm ACCEL MEM: the install-to-disk machine `vmi` (BIOS, serial LAB-INSTALL, so
# lab-config.yaml's `install` profile takes it): network first, then a real 64 MiB disk file that
# the lab installer partitions and makes bootable. Started again, it keeps its disk; mayu hands
# it `sanboot` of that disk. Its disk's boot index puts it in SeaBIOS's drive table for sanboot.
start_install_vm() {
    local accel="$1" mem="$2" mac=52:54:00:77:00:ff disk="$LAB/install.disk.raw"
    [[ -f $disk ]] || truncate -s 64M "$disk"
    printf '\xf8\x03' >"$LAB/sercon"
    local args=(-name mayu-lab-install $accel -m "$mem" -smp 1
        -nodefaults -no-user-config -display none -vga none -monitor none
        -serial "file:$LAB/vmi.serial.log"
        -smbios "type=1,manufacturer=mayu-lab,product=lab-vm,serial=LAB-INSTALL"
        -netdev "tap,id=n0,ifname=tapi,script=no,downscript=no"
        -device "virtio-net-pci,netdev=n0,mac=$mac,bootindex=1"
        -drive "file=$disk,format=raw,if=none,id=d0"
        -device "virtio-blk-pci,drive=d0,bootindex=2"
        -boot order=n,strict=on -fw_cfg "name=etc/sercon-port,file=$LAB/sercon")
    ip -n "$NS" link show tapi >/dev/null 2>&1 || add_tap tapi
    start_bmc i "${args[@]}"
    echo "BIOS, install to disk" >"$LAB/vmi.firmware"
    say "vmi: installs to its disk $disk, mac $mac, serial console $LAB/vmi.serial.log, BMC $(bmc_addr i):$BMC_PORT"
}

cmd_install_vm() {
    need_root install-vm
    ns_exists || die "the lab is down; start it with: sudo $0 up --install"
    if pid_alive "$LAB/pids/vmi.pid" qemu-system-x86_64; then
        die "vmi is still running (it powers off after reporting in); see '$0 serial i'"
    fi
    if pid_alive "$LAB/pids/bmci.pid" ipmi_sim; then
        # Its BMC powers it on, as an operator would.
        bmc_ipmitool i chassis power on
    else
        start_install_vm "$(accel_args auto)" 256
    fi
}

cmd_bmc() {
    need_root bmc
    local n="${1:?usage: $0 bmc N ipmitool-args... (e.g. $0 bmc 0 power status)}"; shift
    ns_exists || die "the lab is down; start it with: sudo $0 up"
    pid_alive "$LAB/pids/bmc$n.pid" ipmi_sim || die "machine $n has no running BMC"
    bmc_ipmitool "$n" "$@"
}

# --- up ----------------------------------------------------------------------------------------

cmd_up() {
    local vms=3 accel=auto mem=256 console=0 install=0
    while (($#)); do
        case "$1" in
            --vms) vms="${2:?--vms needs a number}"; shift 2 ;;
            --vms=*) vms="${1#--vms=}"; shift ;;
            --accel) accel="${2:?--accel needs auto, kvm or tcg}"; shift 2 ;;
            --mem) mem="${2:?--mem needs MiB}"; shift 2 ;;
            --console) console=1; shift ;;
            --install) install=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' for up; see $0 --help" ;;
        esac
    done
    [[ $vms =~ ^[0-9]+$ ]] && ((vms >= 1 && vms <= 32)) || die "--vms takes 1 to 32; got '$vms'"
    need_root up
    check_tools
    if ns_exists; then
        die "the lab is already up (namespace $NS); see '$0 status', or '$0 down' first"
    fi
    local accel_flags
    accel_flags="$(accel_args "$accel")"
    "$REPO/scripts/build-discovery.sh"
    "$REPO/scripts/build-test-image.sh"
    ((install)) && "$REPO/scripts/build-install-image.sh"
    local mayu
    mayu="$(mayu_bin)"
    mkdir -p "$LAB/pids" "$LAB/logs"
    chmod 0755 "$LAB"
    make_bmc_secrets
    fill_tftproot
    make_run_config
    "$mayu" check --config "$RUN_CONFIG" || die "mayu check refused $RUN_CONFIG (made from $CONFIG)"

    # From here on, a failure undoes what was made.
    trap 'say "up failed; cleaning up"; cmd_down --keep' ERR
    net_up
    ((vms <= 2)) || say "note: $vms machines on $(nproc) cores boot slowly under software emulation"

    if ((console)); then
        # The console needs this terminal: machines start in the background once mayu's boot
        # port answers; quitting the console takes the lab down.
        (
            trap - ERR
            if ! wait_boot_port_console; then
                echo "lab: mayu's boot port never answered; no machines started" >>"$LAB/lab.log"
                exit 1
            fi
            for ((i = 0; i < vms; i++)); do start_vm "$i" "$accel_flags" "$mem" 2>>"$LAB/lab.log"; done
            if ((install)); then start_install_vm "$accel_flags" "$mem" 2>>"$LAB/lab.log"; fi
        ) &
        echo $! >"$LAB/pids/launcher.pid"
        trap - ERR
        # The console's pid goes to the same pid file as a headless mayu's (the shell writes
        # its own pid, then becomes mayu), so `lab.sh status` from another terminal sees it.
        echo console >"$LAB/pids/mayu.mode"
        ip netns exec "$NS" sh -c 'echo $$ >"$0"; exec "$@"' "$LAB/pids/mayu.pid" \
            "$mayu" --config "$RUN_CONFIG" || true
        rm -f "$LAB/pids/mayu.mode"
        say "console closed; taking the lab down (logs stay in $LAB)"
        cmd_down --keep
        return
    fi

    ip netns exec "$NS" "$mayu" --headless --config "$RUN_CONFIG" >"$LAB/mayu.log" 2>&1 &
    echo $! >"$LAB/pids/mayu.pid"
    say "mayu headless in namespace $NS (pid $!), log $LAB/mayu.log"
    if ! wait_boot_port; then
        tail -20 "$LAB/mayu.log" >&2 || true
        false
    fi
    for ((i = 0; i < vms; i++)); do start_vm "$i" "$accel_flags" "$mem"; done
    if ((install)); then start_install_vm "$accel_flags" "$mem"; fi
    trap - ERR
    cat >&2 <<EOF
lab: up. Watch machines boot:
  sudo $0 status              (machines, profiles, states)
  sudo $0 ctl watch           (mayu's event stream)
  sudo $0 serial 0            (machine 0's serial console)
  tail -f $LAB/mayu.log
Take it down with: sudo $0 down
EOF
}

# Used by the --console launcher: the console owns the terminal, so no mayu pid file to watch.
wait_boot_port_console() {
    local i
    for ((i = 0; i < 600; i++)); do
        ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$ADDR/$BOOT_PORT" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# --- down --------------------------------------------------------------------------------------

cmd_down() {
    local keep=0
    [[ ${1:-} == --keep ]] && keep=1
    need_root down
    local f
    if [[ -d $LAB/pids ]]; then
        [[ -f $LAB/pids/launcher.pid ]] && stop_pid "$LAB/pids/launcher.pid" lab.sh
        # BMCs first, so none powers a machine on again; then the machines they started.
        for f in "$LAB"/pids/bmc*.pid; do
            [[ -e $f ]] && stop_pid "$f" ipmi_sim
        done
        for f in "$LAB"/pids/vm*.pid; do
            [[ -e $f ]] && stop_pid "$f" qemu-system-x86_64
        done
        [[ -f $LAB/pids/mayu.pid ]] && stop_pid "$LAB/pids/mayu.pid" --config
    fi
    if ns_exists; then
        # Whatever still runs in the lab's namespace was started for the lab (a dnsmasq child
        # left behind by a killed mayu, say): stop it by pid before the namespace goes.
        local pid
        for pid in $(ip netns pids "$NS" 2>/dev/null); do
            say "stopping leftover pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-60))"
            kill -KILL "$pid" 2>/dev/null || true
        done
        # Deleting the namespace removes the bridge and the taps with it.
        ip netns del "$NS"
        say "removed namespace $NS"
    fi
    if ((keep)); then
        say "down; logs and inventory kept in $LAB"
    else
        rm -rf "$LAB"
        say "down; removed $LAB"
    fi
}

# --- status ------------------------------------------------------------------------------------

json_field() {
    # The first value of "key": in a pretty-printed machine file (strings and null only).
    sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$2" | head -1
}

cmd_status() {
    need_root status
    if ! ns_exists; then
        say "down (no namespace $NS)"
        return 0
    fi
    echo "namespace $NS: br0 $(ip -n "$NS" -br addr show br0 | awk '{print $3, $4}')"
    if pid_alive "$LAB/pids/mayu.pid" --config; then
        if [[ -f $LAB/pids/mayu.mode ]]; then
            echo "mayu: running with its console in another terminal (pid $(cat "$LAB/pids/mayu.pid")), log $LAB/logs"
        else
            echo "mayu: running (pid $(cat "$LAB/pids/mayu.pid")), log $LAB/mayu.log"
        fi
    else
        echo "mayu: not running (see $LAB/mayu.log)"
    fi
    local f i last
    for f in "$LAB"/pids/vm*.pid "$LAB"/vm*.firmware; do
        [[ -e $f ]] || continue
        [[ $f == *.firmware ]] || continue
        i="${f##*/vm}"; i="${i%.firmware}"
        last="$(grep -a 'mayu-' "$LAB/vm$i.serial.log" 2>/dev/null | tail -1 | tr -d '\r')" || true
        if pid_alive "$LAB/pids/vm$i.pid" qemu-system-x86_64; then
            echo "vm$i (boot path: $(cat "$f")): running  ${last:-(no guest output yet)}"
        else
            echo "vm$i (boot path: $(cat "$f")): stopped  ${last:-}"
        fi
        if pid_alive "$LAB/pids/bmc$i.pid" ipmi_sim; then
            local power
            power="$(bmc_ipmitool "$i" chassis power status 2>/dev/null)" || power="no answer"
            echo "  BMC $(bmc_addr "$i") UDP $BMC_PORT, user $BMC_USER: ${power#Chassis }"
        else
            echo "  BMC $(bmc_addr "$i"): not running (see $LAB/bmc$i.log)"
        fi
    done
    if [[ -f $LAB/bmc.password ]]; then
        echo "BMCs: IPMI-over-LAN (ipmitool -I lanplus -C 3) inside the namespace, user $BMC_USER,"
        echo "  password in $LAB/bmc.password; mayu's credentials file $LAB/bmc-secrets.yaml (0600)."
        echo "  Give a machine its BMC: sudo $0 ctl set ID ipmi_addr 10.77.0.(20+N)"
        echo "  Drive one by hand: sudo $0 bmc N power status|on|off|cycle|reset"
    fi
    if [[ -d $LAB/inventory ]]; then
        echo "machines (inventory):"
        for f in "$LAB"/inventory/*.json; do
            [[ -e $f ]] || continue
            printf '  %-24s profile %-10s state %s\n' "$(basename "$f" .json)" \
                "$(json_field profile "$f")" "$(json_field state "$f")"
        done
    fi
}

cmd_ctl() {
    need_root ctl
    ns_exists || die "the lab is down; start it with: sudo $0 up"
    local ctl token
    ctl="$(mayuctl_bin)"
    token="$LAB/tokens.json.admin"
    [[ -f $token ]] || die "no admin token at $token (mayu writes it at its first start)"
    ip netns exec "$NS" "$ctl" --server "$API_URL" --token-file "$token" "$@"
}

cmd_serial() {
    local i="${1:?usage: $0 serial N}"
    [[ -f $LAB/vm$i.serial.log ]] || die "no machine $i (no $LAB/vm$i.serial.log)"
    exec tail -n +1 -f "$LAB/vm$i.serial.log"
}

case "${1:-}" in
    deps) shift; cmd_deps "$@" ;;
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    ctl) shift; cmd_ctl "$@" ;;
    serial) shift; cmd_serial "$@" ;;
    install-vm) shift; cmd_install_vm "$@" ;;
    bmc) shift; cmd_bmc "$@" ;;
    -h|--help|help|"") usage ;;
    *) die "unknown command '$1'; one of: deps, up, down, status, ctl, serial, install-vm, bmc" ;;
esac
