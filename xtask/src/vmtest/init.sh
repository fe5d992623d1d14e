#!/bin/busybox sh
# /init of a `cargo xtask vmtest` guest (xtask/src/vmtest/init.sh, built into the image
# by xtask/src/vmtest/image.rs). Mounts what cowtrace and the tests need, loads the
# disk and ext4 modules, mounts the test disk on /tmp, runs the guest runner (which
# prints the `VMTEST name PASS|FAIL detail` lines on the serial console) and powers off.
# A step that fails here prints a `VMTEST boot FAIL` line and powers off at once.
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root

fail() {
    echo "VMTEST boot FAIL $*"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing || fail "mount tracefs"
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
hostname vmtest

while read -r m; do
    insmod "$m" || fail "insmod $m"
done < /vmtest/modules

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
    usleep 100000
    i=$((i + 1))
done
[ -b /dev/vda ] || fail "no /dev/vda after 10 s"
mount -t ext4 /dev/vda /tmp || fail "mount /dev/vda on /tmp"
chmod 1777 /tmp

# As on the development host: THP only where a program asks for it (the THP test does).
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled

/usr/local/bin/xtask vmtest-guest /vmtest/plan.json
sync
poweroff -f
