#!/bin/sh
# Run inside the sanitized L1 by `cargo xtask splats`: provokes, through
# LKDTM, one report of each kind the kernel-trouble list must catch, each
# after a marker line on the console, so that xtask can cut the console
# into one captured splat per kind (harness/proto/tests/data/splats/).
#
# The order matters. The first oops taints the kernel with TAINT_DIE,
# after which khungtaskd reports no hung task, and an oops or a sanitizer
# report turns lock debugging off, after which lockdep and
# DEBUG_ATOMIC_SLEEP stay silent: so the hung task and the lockdep
# provocation come first, before anything that oopses. The lockups run in
# the background and never end (L1 has two CPUs, and the script goes on
# on the other one); the panic comes last, and ends L1.
#
# Each provocation runs in a subshell: an oops kills the writer, not this
# script.
set -u
DIRECT=/sys/kernel/debug/provoke-crash/DIRECT
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -w "$DIRECT" ] || { echo "1..0 # SKIP no $DIRECT (CONFIG_LKDTM, CONFIG_DEBUG_FS)"; exit 4; }
# Reports within seconds rather than minutes.
echo 1 > /proc/sys/kernel/watchdog_thresh
echo 3 > /sys/module/rcupdate/parameters/rcu_cpu_stall_timeout
echo 2 > /proc/sys/kernel/hung_task_timeout_secs
mark() { echo "hh-splat: $1" > /dev/kmsg; }
n=0
echo "KTAP version 1"
echo "1..13"

# A task asleep in D state for good: "INFO: task sh:… blocked for more
# than 2 seconds." khungtaskd needs two of its checks to see it.
n=$((n + 1)); mark HUNG_TASK
(echo HUNG_TASK > "$DIRECT") &
sleep 8
echo "ok $n HUNG_TASK"

# SPINLOCKUP takes a spinlock and returns to user space holding it:
# lockdep reports "lock held when returning to user space", and the
# writer's next allocation, with preemption still off, "BUG: sleeping
# function called from invalid context" (DEBUG_ATOMIC_SLEEP). Nothing
# else takes that lock, so nothing spins on it.
n=$((n + 1)); mark SPINLOCKUP
(echo SPINLOCKUP > "$DIRECT"; /bin/true) 2>/dev/null
sleep 2
echo "ok $n SPINLOCKUP"

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

# "Kernel panic - not syncing": L1 ends here (panic=-1 and QEMU's
# -no-reboot), so this is the last report and the last line.
n=$((n + 1)); echo "ok $n PANIC"
mark PANIC
echo PANIC > "$DIRECT"
