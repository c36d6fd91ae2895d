#!/bin/sh
# Run inside the sanitized L1 by `cargo xtask splats`: provokes, through
# LKDTM, one report of each kind the kernel-trouble list must catch, each
# after a marker line on the console, so that xtask can cut the console
# into one captured splat per kind (harness/proto/tests/data/splats/).
# A hung task is not provoked: its report did not come within the wait
# (khungtaskd checks on its own schedule), so that one stays a line written
# from the printk format in proto's tests.
# Each provocation runs in a subshell: an oops kills the writer, not this
# script. The lockups run in the background and never end; L1 has two
# CPUs, and the agent goes on on the other one.
set -u
DIRECT=/sys/kernel/debug/provoke-crash/DIRECT
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -w "$DIRECT" ] || { echo "1..0 # SKIP no $DIRECT (CONFIG_LKDTM, CONFIG_DEBUG_FS)"; exit 4; }
# Reports within seconds rather than minutes.
echo 1 > /proc/sys/kernel/watchdog_thresh
echo 3 > /sys/module/rcupdate/parameters/rcu_cpu_stall_timeout
mark() { echo "hh-splat: $1" > /dev/kmsg; }
n=0
echo "KTAP version 1"
echo "1..11"
for kind in WARNING EXCEPTION BUG SLAB_LINEAR_OVERFLOW READ_AFTER_FREE KFENCE_READ_AFTER_FREE \
            ARRAY_BOUNDS CORRUPT_LIST_ADD REFCOUNT_DEC_ZERO; do
    n=$((n + 1))
    mark "$kind"
    (echo "$kind" > "$DIRECT") 2>/dev/null
    sleep 1
    echo "ok $n $kind"
done
n=$((n + 1)); mark SOFTLOCKUP
(echo SOFTLOCKUP > "$DIRECT") &
sleep 12
echo "ok $n SOFTLOCKUP"
n=$((n + 1)); mark END
echo "ok $n END"
exit 0
