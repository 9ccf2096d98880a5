//! `ip minttl`: drop packets that arrive with a TTL (hop limit) below the value, the
//! Generalized TTL Security Mechanism (RFC 5082). relayd sets IP_MINTTL on its relay
//! sockets; Linux has the same option for IPv4 and IPV6_MINHOPCOUNT for IPv6. Neither
//! socket2 nor rustix wraps them, hence the one setsockopt(2) call below.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// IPV6_MINHOPCOUNT from linux/in6.h (the libc crate does not export it everywhere).
const IPV6_MINHOPCOUNT: libc::c_int = 73;

pub fn set(fd: &impl AsRawFd, ipv6: bool, ttl: u8) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let value = libc::c_int::from(ttl);
    // SAFETY: `fd` is an open socket borrowed for the duration of the call; the option
    // value is a c_int on the stack whose size is passed alongside it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
