#!/bin/busybox sh
# The /init of the first arm64 guests (issue 18), by hand until `vmtest --arch arm64`
# exists: an initramfs of Debian's arm64 busybox-static, this file as /init, /tests.txt
# (lines `BINARY:TEST` of the cross-built root tests) and, at their build paths,
# target/aarch64-unknown-linux-musl/release/{cowtrace,examples/cowload,deps/cow-*}
# (`cargo xtask build --arch arm64 --tests cow`); booted with
#   qemu-system-aarch64 -M virt -cpu max -accel tcg,thread=single -smp 1 -m 2048 \
#     -nographic -no-reboot -kernel vmlinuz-RELEASE -initrd initrd.cpio \
#     -append "console=ttyAMA0 rdinit=/init panic=-1 quiet"
# The paths below are the arm64 worktree's; /tmp is tmpfs (no disk, no modules).
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled
echo "VMTEST uname $(uname -r) $(uname -m)"
grep -c . /sys/kernel/tracing/available_filter_functions | sed 's/^/VMTEST filter_functions /'
grep -E '^(do_wp_page|wp_page_copy|wp_page_reuse|do_huge_pmd_wp_page)( |$)' /sys/kernel/tracing/available_filter_functions | sed 's/^/VMTEST ftrace-fn /'
grep -E ' (do_wp_page|wp_page_copy)$' /proc/kallsyms | sed 's/^/VMTEST kallsyms /'
R=/work/wt-arm64/target/aarch64-unknown-linux-musl/release
$R/cowtrace check 2>&1 | sed 's/^/CHECK /'
echo "VMTEST check rc=$?"
export COWTRACE_TEST_PREBUILT=1 COWTRACE_TEST_TIME_SCALE=20
for hooks in auto tracepoint; do
  for t in $(cat /tests.txt); do
    bin=${t%%:*}; name=${t#*:}
    start=$(date +%s)
    COWTRACE_HOOKS=$hooks $R/deps/$bin --ignored --exact --test-threads=1 --nocapture $name > /tmp/out 2>&1
    rc=$?
    grep -E 'parent-writes:|cow|test result|panicked|assert' /tmp/out | head -8 | sed "s/^/LOG $hooks $name: /"
    if [ $rc = 0 ]; then echo "VMTEST $hooks/$name PASS $(( $(date +%s) - start ))s"; else echo "VMTEST $hooks/$name FAIL rc=$rc"; tail -20 /tmp/out; fi
  done
done
echo VMTEST done
poweroff -f
