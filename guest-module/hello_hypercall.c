// SPDX-License-Identifier: GPL-2.0
/*
 * hello_hypercall - issue KVM_HC_HELLO_HYPERCALL from an unpatched KVM guest
 *
 * The module registers /dev/hello_hypercall (root only):
 *
 *  - read() passes a kernel buffer to the host, which fills it with the
 *    NUL-terminated greeting "Hello World".  The greeting is returned as a
 *    line of text, i.e. the NUL is replaced by a newline: "Hello World\n".
 *  - ioctl(HELLO_HYPERCALL_IOC_RAW) issues the hypercall without a buffer
 *    and hands the raw return value to user space, see hello_hypercall.h.
 *
 * Hypercall ABI: a0 = guest physical address of the buffer or 0, a1 = size
 * of the buffer (0 without a buffer), a2 = a3 = 0.  The host returns the
 * number of bytes it wrote (including the NUL) or a negative KVM error code.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bits.h>
#include <linux/cc_platform.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/kvm_para.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/hypervisor.h>
#include <asm/processor.h>
/*
 * Newer kernels (7.3) keep cpuid_eax() and the lookup of a hypervisor's
 * CPUID leaves in <asm/cpuid/api.h>, which <asm/processor.h> no longer
 * includes, and name the lookup cpuid_base_hypervisor().  Its iterator
 * macro, defined beside it, tells which name this kernel has.
 */
#if __has_include("asm/cpuid/api.h")
#include <asm/cpuid/api.h>
#endif
#ifdef for_each_possible_cpuid_base_hypervisor
#define hypervisor_cpuid_base cpuid_base_hypervisor
#endif

#include "hello_hypercall.h"

/* Stock kernel headers predate the hello hypercall. */
#ifndef KVM_HC_HELLO_HYPERCALL
#define KVM_HC_HELLO_HYPERCALL		13
#endif

#ifndef KVM_FEATURE_HELLO_HYPERCALL
#define KVM_FEATURE_HELLO_HYPERCALL	18
#endif

/*
 * Size of "Hello World" including its NUL.  The text handed to user space
 * ends in a newline instead of the NUL, so it is never longer than this.
 */
#define HELLO_BUF_SIZE			12

static long hello_hypercall(void *buf, size_t size)
{
	unsigned long gpa = buf ? virt_to_phys(buf) : 0;

	return kvm_hypercall4(KVM_HC_HELLO_HYPERCALL, gpa, size, 0, 0);
}

/*
 * Map the hypercall's result to an errno, or to the number of greeting bytes
 * (including the NUL) that the host wrote into a HELLO_BUF_SIZE buffer.
 */
static ssize_t hello_result(long hc)
{
	if (hc > 0 && hc <= HELLO_BUF_SIZE)
		return hc;

	switch (hc) {
	case -KVM_ENOSYS:
		return -EOPNOTSUPP;
	case -KVM_EFAULT:
		return -EFAULT;
	default:
		pr_warn_ratelimited("unexpected hypercall result %ld\n", hc);
		return -EIO;
	}
}

static ssize_t hello_read(struct file *file, char __user *ubuf, size_t count,
			  loff_t *ppos)
{
	ssize_t ret;
	size_t len;
	char *buf;

	if (*ppos < 0)
		return -EINVAL;
	/* Nothing can follow the greeting: EOF without a hypercall. */
	if (*ppos >= HELLO_BUF_SIZE || !count)
		return 0;

	/* Physically contiguous memory with a valid guest physical address. */
	buf = kzalloc(HELLO_BUF_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	ret = hello_result(hello_hypercall(buf, HELLO_BUF_SIZE));
	if (ret < 0)
		goto out;

	/* The ABI promises a NUL within the bytes written; check it anyway. */
	len = strnlen(buf, ret);
	if (len == ret) {
		pr_warn_ratelimited("greeting is not NUL-terminated\n");
		ret = -EIO;
		goto out;
	}

	/* Return a line of text: the NUL becomes a newline. */
	buf[len] = '\n';
	ret = simple_read_from_buffer(ubuf, count, ppos, buf, len + 1);
out:
	kfree(buf);
	return ret;
}

static loff_t hello_llseek(struct file *file, loff_t offset, int whence)
{
	return fixed_size_llseek(file, offset, whence, HELLO_BUF_SIZE);
}

static long hello_ioctl(struct file *file, unsigned int cmd,
			unsigned long arg)
{
	s64 hc;

	switch (cmd) {
	case HELLO_HYPERCALL_IOC_RAW:
		hc = hello_hypercall(NULL, 0);
		if (put_user(hc, (s64 __user *)arg))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations hello_fops = {
	.owner		= THIS_MODULE,
	.read		= hello_read,
	.llseek		= hello_llseek,
	.unlocked_ioctl	= hello_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice hello_miscdev = {
	.minor		= MISC_DYNAMIC_MINOR,
	.name		= "hello_hypercall",
	.fops		= &hello_fops,
	.mode		= 0600,
};

static int __init hello_hypercall_init(void)
{
	u32 base = 0;
	u32 features;
	int ret;

	/*
	 * Only KVM implements the hypercall.  Hyper-V and Xen can show a KVM
	 * signature at a higher CPUID base too, but VMCALL would then go to
	 * their own handlers; x86_hyper_type says which hypervisor the kernel
	 * runs on, and is not KVM when the kernel was booted with "nopv".
	 * kvm_para_has_feature() cannot be used from a module, so look up the
	 * KVM CPUID leaves here.
	 */
	if (hypervisor_is_type(X86_HYPER_KVM) && kvm_para_available())
		base = hypervisor_cpuid_base(KVM_SIGNATURE, 0);
	if (!base) {
		pr_err("not running on KVM as the primary hypervisor\n");
		return -ENODEV;
	}

	/* The host cannot write the greeting into private guest memory. */
	if (cc_platform_has(CC_ATTR_GUEST_MEM_ENCRYPT)) {
		pr_err("guest memory is encrypted, the host cannot write to it\n");
		return -ENODEV;
	}

	ret = misc_register(&hello_miscdev);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", hello_miscdev.name, ret);
		return ret;
	}

	/*
	 * The feature bit is only a hint: some VMMs do not pass feature bits
	 * they do not know to the guest, so the hypercall may well work even
	 * though the bit is clear.
	 */
	features = cpuid_eax(base | KVM_CPUID_FEATURES);
	if (features & BIT(KVM_FEATURE_HELLO_HYPERCALL))
		pr_info("host advertises KVM_FEATURE_HELLO_HYPERCALL\n");
	else
		pr_info("KVM_FEATURE_HELLO_HYPERCALL not set, trying the hypercall anyway\n");

	return 0;
}

static void __exit hello_hypercall_exit(void)
{
	misc_deregister(&hello_miscdev);
}

module_init(hello_hypercall_init);
module_exit(hello_hypercall_exit);

MODULE_DESCRIPTION("Issue the KVM_HC_HELLO_HYPERCALL hypercall from a KVM guest");
MODULE_LICENSE("GPL");
