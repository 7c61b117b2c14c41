//! ONC RPC (RFC 5531) call headers: the program number says which service
//! a flow talks to even on the dynamic ports NFS's helpers (mountd,
//! lockd, statd) use.

/// Program numbers of the NFS family: portmapper, NFS, mountd, nlockmgr,
/// status, NFS ACL.
pub const NFS_FAMILY: [u32; 6] = [100_000, 100_003, 100_005, 100_021, 100_024, 100_227];

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        <[u8; 4]>::try_from(b.get(off..off.checked_add(4)?)?).ok()?,
    ))
}

/// The program number of an ONC RPC call, if `payload` starts with one.
/// Over TCP (`stream`), calls carry a 4-byte record mark first.
pub fn call_program(payload: &[u8], stream: bool) -> Option<u32> {
    let msg = if stream {
        let mark = be32(payload, 0)?;
        let len = (mark & 0x7fff_ffff) as usize;
        if !(40..=(1 << 20)).contains(&len) {
            return None;
        }
        payload.get(4..)?
    } else {
        payload
    };
    // xid, msg_type = CALL (0), rpcvers = 2, prog, vers, proc, cred.
    if be32(msg, 4)? != 0 || be32(msg, 8)? != 2 {
        return None;
    }
    let prog = be32(msg, 12)?;
    let vers = be32(msg, 16)?;
    let flavor = be32(msg, 24)?;
    let cred_len = be32(msg, 28)?;
    if vers == 0 || vers > 10 || flavor > 6 || cred_len > 400 || cred_len % 4 != 0 {
        return None;
    }
    // The verifier follows the credentials.
    let verf_at = 32usize.checked_add(cred_len as usize)?;
    let verf_flavor = be32(msg, verf_at)?;
    (verf_flavor <= 6).then_some(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A mountd (100005 v1) call from nfsv2.pcap: AUTH_UNIX credentials.
    const MOUNT_CALL: &str = "3841169f0000000000000002000186a500000001000000010000000100000034384775d000000009776572726d7363686500000000000000000000010000000500000001000000000000000200000003000000110000000000000000000000142f686f6d652f6769726c6963682f6578706f7274";

    use crate::classify::dpi::test_util::hex;

    #[test]
    fn reads_the_program_of_a_call() {
        let call = hex(MOUNT_CALL);
        assert_eq!(call_program(&call, false), Some(100_005));
        let mut framed = ((call.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
        framed.extend_from_slice(&call);
        assert_eq!(call_program(&framed, true), Some(100_005));
        // A reply (msg_type 1) is not a call; truncations never panic.
        let mut reply = call.clone();
        reply[7] = 1;
        assert_eq!(call_program(&reply, false), None);
        for n in 0..call.len() {
            let _ = call_program(&call[..n], false);
            let _ = call_program(&call[..n], true);
        }
        assert_eq!(
            call_program(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", false),
            None
        );
    }
}
