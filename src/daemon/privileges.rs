//! Dropping root: once the raw sockets are open, the interfaces prepared
//! and the listeners bound, `qosd run` started as root switches to
//! `daemon.user` and keeps only the capabilities it still needs: sending
//! and receiving on open sockets needs none, but re-opening the sockets of
//! an interface that was re-created needs CAP_NET_RAW, and turning its
//! offloads off (and restoring offloads at exit) CAP_NET_ADMIN.
//! Must run before any other thread starts: capabilities are per thread.

use std::ffi::CString;

use caps::{CapSet, Capability, CapsHashSet};

/// Why privileges could not be dropped (qosd refuses to run on).
#[derive(Debug, thiserror::Error)]
#[error("cannot switch to user {user}: {reason}")]
pub struct DropError {
    /// The configured user.
    pub user: String,
    /// What failed.
    pub reason: String,
}

/// Switches to `user` (and its primary group, no supplementary groups),
/// keeping only `keep` as permitted and effective capabilities. A no-op
/// when not running as root.
pub fn drop_to(user: &str, keep: &[Capability]) -> Result<(), DropError> {
    let err = |reason: String| DropError {
        user: user.to_owned(),
        reason,
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = CString::new(user).map_err(|_| err("bad user name".into()))?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into pw and buf, both alive for the call.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(err(
            "no such user (create it, e.g. useradd --system qosd)".into()
        ));
    }
    let (uid, gid) = (pw.pw_uid, pw.pw_gid);
    if uid == 0 {
        return Err(err("it is root; name an unprivileged user".into()));
    }
    // Keep the permitted set across the uid change, then trim it.
    // SAFETY: plain prctl/setgroups/setgid/setuid calls; glibc applies the
    // id changes to every thread.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(err(format!(
                "PR_SET_KEEPCAPS: {}",
                std::io::Error::last_os_error()
            )));
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(err(format!(
                "setgroups: {}",
                std::io::Error::last_os_error()
            )));
        }
        if libc::setgid(gid) != 0 {
            return Err(err(format!("setgid: {}", std::io::Error::last_os_error())));
        }
        if libc::setuid(uid) != 0 {
            return Err(err(format!("setuid: {}", std::io::Error::last_os_error())));
        }
    }
    // Only what this process may hold: a container's bounding set, or a
    // kernel older than the capability (CAP_BPF: 5.8), may lack some, and
    // asking for them would fail the whole change. What is left out only
    // limits what a re-open can do (AF_XDP then falls back to the ring).
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let (keep, missing): (CapsHashSet, CapsHashSet) =
        keep.iter().copied().partition(|c| permitted.contains(c));
    if !missing.is_empty() {
        tracing::warn!("not permitted, so not kept: {missing:?}");
    }
    // Effective first (it must stay within permitted), then permitted.
    for (set, want) in [
        (CapSet::Effective, &keep),
        (CapSet::Permitted, &keep),
        (CapSet::Inheritable, &CapsHashSet::new()),
    ] {
        caps::set(None, set, want).map_err(|e| err(format!("capabilities: {e}")))?;
    }
    let _ = caps::clear(None, CapSet::Ambient);
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // Regaining root must be impossible now.
    // SAFETY: plain setuid; it must fail.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(err("could still become root again".into()));
    }
    tracing::info!(user, uid, gid, "dropped privileges, keeping {:?}", keep);
    Ok(())
}
