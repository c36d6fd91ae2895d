/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * User space interface of the hello_hypercall module (/dev/hello_hypercall).
 *
 * read() returns the host's greeting as text, see README.md.
 *
 * HELLO_HYPERCALL_IOC_RAW issues KVM_HC_HELLO_HYPERCALL without a buffer
 * (a0 = a1 = a2 = a3 = 0) and stores the hypercall's unmodified return
 * value in the __s64 that the argument points to.  On success the ioctl
 * returns 0 and the stored value is the host's answer:
 *
 *	    0	the host executed the hypercall (no buffer, nothing written)
 *	   -1	-KVM_EPERM
 *	  -14	-KVM_EFAULT
 *	  -22	-KVM_EINVAL
 *	-1000	-KVM_ENOSYS: the host lacks the hypercall or has it disabled
 *
 * The ioctl itself fails with EFAULT if the argument is not writable and
 * with ENOTTY for any other command.
 *
 * The command number is _IOR('H', 0x01, __s64) == 0x80084801 on x86.
 */
#ifndef _UAPI_LINUX_HELLO_HYPERCALL_H
#define _UAPI_LINUX_HELLO_HYPERCALL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define HELLO_HYPERCALL_IOC_MAGIC	'H'
#define HELLO_HYPERCALL_IOC_RAW		_IOR(HELLO_HYPERCALL_IOC_MAGIC, 0x01, __s64)

#endif /* _UAPI_LINUX_HELLO_HYPERCALL_H */
