//! What the supervisor and an instance stub say to each other over their Unix socket, as bytes:
//! the stub's banner, the launch message (an [`ExecSpec`], and whether a listening socket rides
//! along as `SCM_RIGHTS`), and the stub's report when its `execve` failed. Pure encoding and
//! decoding; the sockets are the callers'.
//!
//! ```text
//! stub → supervisor   BANNER                                    once it waits for a launch
//! supervisor → stub   len: u32 LE, flags: u32 LE   (+ SCM_RIGHTS: the listening socket)
//!                     len bytes of records: tag: u8, size: u32 LE, bytes
//!                       'A' argv entry · 'N' env name, then 'V' its value · 'D' working dir
//!                       'U' uid, gid and groups (u32 LE each) to run as
//! stub → supervisor   nothing (exec succeeded: the socket closes on exec), or
//!                     errno: i32 LE, then a message (UTF-8) when errno is 0
//! ```

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::launcher::{Credentials, ExecSpec};

/// What a stub says once it is ready; also checks that the program really is a stub of this
/// protocol's version.
pub(crate) const BANNER: &[u8] = b"nimbus-instance-stub 1\n";
/// The launch message's fixed part: payload length and flags.
pub(crate) const HEADER_LEN: usize = 8;
/// Flag: a listening socket accompanies the header (for fd 3, socket activation).
pub(crate) const WITH_SOCKET: u32 = 1;
/// Larger launch messages are refused (the kernel caps argv + environment far below this).
const MAX_PAYLOAD: usize = 64 << 20;

const ARG: u8 = b'A';
const ENV_NAME: u8 = b'N';
const ENV_VALUE: u8 = b'V';
const DIR: u8 = b'D';
const USER: u8 = b'U';

/// The launch message: header (length, flags) and payload. Fails as `std::process::Command`
/// does (`InvalidInput`) on a NUL byte, which no `execve` can carry.
pub(crate) fn encode(
    exec: &ExecSpec,
    with_socket: bool,
) -> io::Result<([u8; HEADER_LEN], Vec<u8>)> {
    let mut payload = Vec::new();
    let mut record = |tag: u8, bytes: &[u8]| -> io::Result<()> {
        // Strings end up NUL-terminated for `execve`; ids are binary.
        if tag != USER && bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            ));
        }
        payload.push(tag);
        payload.extend(u32::try_from(bytes.len()).map_err(too_long)?.to_le_bytes());
        payload.extend(bytes);
        Ok(())
    };
    for arg in &exec.argv {
        record(ARG, arg.as_bytes())?;
    }
    for (name, value) in &exec.env {
        record(ENV_NAME, name.as_bytes())?;
        record(ENV_VALUE, value.as_bytes())?;
    }
    if let Some(dir) = &exec.cwd {
        record(DIR, dir.as_os_str().as_bytes())?;
    }
    if let Some(user) = &exec.user {
        let ids = [user.uid, user.gid]
            .into_iter()
            .chain(user.groups.iter().copied());
        let bytes: Vec<u8> = ids.flat_map(u32::to_le_bytes).collect();
        record(USER, &bytes)?;
    }
    let len = u32::try_from(payload.len()).map_err(too_long)?;
    let flags = if with_socket { WITH_SOCKET } else { 0 };
    let mut header = [0; HEADER_LEN];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&flags.to_le_bytes());
    Ok((header, payload))
}

/// The header's payload length and flags.
pub(crate) fn decode_header(header: &[u8; HEADER_LEN]) -> io::Result<(usize, u32)> {
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let len = usize::try_from(word(0)).map_err(too_long)?;
    if len > MAX_PAYLOAD {
        return Err(too_long(len));
    }
    Ok((len, word(4)))
}

/// The [`ExecSpec`] of a payload made by [`encode`].
pub(crate) fn decode(mut payload: &[u8]) -> io::Result<ExecSpec> {
    let mut exec = ExecSpec::default();
    let mut name = None;
    while let Some((&tag, rest)) = payload.split_first() {
        let size = rest
            .get(..4)
            .ok_or_else(|| malformed("a record is cut short"))?;
        let size = u32::from_le_bytes(size.try_into().expect("4 bytes")) as usize;
        let bytes = rest
            .get(4..4 + size)
            .ok_or_else(|| malformed("a record is cut short"))?;
        payload = &rest[4 + size..];
        if tag == USER && name.is_none() {
            exec.user = Some(credentials(bytes)?);
            continue;
        }
        let bytes = OsString::from_vec(bytes.to_vec());
        match (tag, name.take()) {
            (ARG, None) => exec.argv.push(bytes),
            (ENV_NAME, None) => name = Some(bytes),
            (ENV_VALUE, Some(name)) => exec.env.push((name, bytes)),
            (DIR, None) => exec.cwd = Some(PathBuf::from(bytes)),
            _ => return Err(malformed("unexpected record")),
        }
    }
    match (name, exec.argv.is_empty()) {
        (None, false) => Ok(exec),
        (Some(_), _) => Err(malformed("an environment name has no value")),
        (None, true) => Err(malformed("no program")),
    }
}

/// A `USER` record: uid, gid, then the supplementary groups.
fn credentials(bytes: &[u8]) -> io::Result<Credentials> {
    let (ids, rest) = bytes.as_chunks::<4>();
    if !rest.is_empty() || ids.len() < 2 {
        return Err(malformed("a user record is not a list of ids"));
    }
    let ids: Vec<u32> = ids.iter().map(|id| u32::from_le_bytes(*id)).collect();
    Ok(Credentials {
        uid: ids[0],
        gid: ids[1],
        groups: ids[2..].to_vec(),
    })
}

/// The stub's report of a failed `execve`.
pub(crate) fn encode_failure(error: &io::Error) -> Vec<u8> {
    let errno = error.raw_os_error().unwrap_or(0);
    let mut report = errno.to_le_bytes().to_vec();
    if errno == 0 {
        report.extend(error.to_string().as_bytes());
    }
    report
}

/// The error a stub reported: the OS error for its errno, exactly as `spawn` would have
/// returned it.
pub(crate) fn decode_failure(report: &[u8]) -> io::Error {
    let Some((errno, message)) = report.split_first_chunk::<4>() else {
        return io::Error::other("the instance stub ended while reporting a failed exec");
    };
    match i32::from_le_bytes(*errno) {
        0 => io::Error::other(String::from_utf8_lossy(message).into_owned()),
        errno => io::Error::from_raw_os_error(errno),
    }
}

/// The control message that passes `fd` (`SCM_RIGHTS`), for `sendmsg`.
pub(crate) fn rights(fd: RawFd) -> Vec<u8> {
    let mut control = vec![0; RIGHTS_SPACE];
    let put = |control: &mut [u8], at: usize, bytes: &[u8]| {
        control[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(
        &mut control,
        LEN_AT,
        &(RIGHTS_LEN as libc::size_t).to_ne_bytes(),
    );
    put(&mut control, LEVEL_AT, &libc::SOL_SOCKET.to_ne_bytes());
    put(&mut control, TYPE_AT, &libc::SCM_RIGHTS.to_ne_bytes());
    put(&mut control, DATA_AT, &fd.to_ne_bytes());
    control
}

/// The descriptors of the `SCM_RIGHTS` messages in `control` (as filled by `recvmsg`), in
/// order. Other control messages are skipped.
pub(crate) fn received_fds(control: &[u8]) -> Vec<RawFd> {
    let mut fds = Vec::new();
    let mut at = 0;
    while let Some(header) = control.get(at..at + DATA_AT) {
        let int = |offset: usize| {
            i32::from_ne_bytes(header[offset..offset + 4].try_into().expect("4 bytes"))
        };
        let len = usize::from_ne_bytes(
            header[LEN_AT..LEN_AT + size_of::<usize>()]
                .try_into()
                .expect("usize"),
        );
        let Some(data) = control.get(at + DATA_AT..at + len.max(DATA_AT)) else {
            break;
        };
        if (int(LEVEL_AT), int(TYPE_AT)) == (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
            let fd = |chunk: &[u8]| RawFd::from_ne_bytes(chunk.try_into().expect("4 bytes"));
            fds.extend(data.chunks_exact(size_of::<RawFd>()).map(fd));
        }
        at += align(len.max(DATA_AT));
    }
    fds
}

/// Room for one `SCM_RIGHTS` control message of one descriptor (`CMSG_SPACE`).
pub(crate) const RIGHTS_SPACE: usize = DATA_AT + align(size_of::<RawFd>());
/// Its `cmsg_len` (`CMSG_LEN`).
const RIGHTS_LEN: usize = DATA_AT + size_of::<RawFd>();
/// Where a control message's data starts (`CMSG_LEN(0)`): after the header, aligned.
const DATA_AT: usize = align(size_of::<libc::cmsghdr>());
const LEN_AT: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_len);
const LEVEL_AT: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_level);
const TYPE_AT: usize = std::mem::offset_of!(libc::cmsghdr, cmsg_type);

/// `CMSG_ALIGN`: control messages are aligned to `size_t` on Linux.
const fn align(len: usize) -> usize {
    let to = size_of::<libc::size_t>();
    len.div_ceil(to) * to
}

fn too_long(len: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the launch message is too long ({len} bytes)"),
    )
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed launch message: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> ExecSpec {
        ExecSpec {
            argv: vec!["/bin/prog".into(), "".into(), "a b=c".into()],
            env: vec![("PATH".into(), "/bin".into()), ("EMPTY".into(), "".into())],
            cwd: Some("/srv/app".into()),
            user: Some(Credentials {
                uid: 65534,
                gid: 0,
                groups: vec![5, 256],
            }),
            mounts: vec![],
        }
    }

    #[test]
    fn launch_messages_round_trip() {
        let (header, payload) = encode(&exec(), true).unwrap();
        assert_eq!(
            decode_header(&header).unwrap(),
            (payload.len(), WITH_SOCKET)
        );
        assert_eq!(decode(&payload).unwrap(), exec());
        let bare = ExecSpec {
            argv: vec!["x".into()],
            ..ExecSpec::default()
        };
        let (header, payload) = encode(&bare, false).unwrap();
        assert_eq!(decode_header(&header).unwrap().1, 0);
        assert_eq!(decode(&payload).unwrap(), bare);
    }

    #[test]
    fn nul_bytes_are_refused_like_command_does() {
        let mut spec = exec();
        spec.env.push(("BAD".into(), "a\0b".into()));
        let error = encode(&spec, false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(error.to_string(), "nul byte found in provided data");
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let (_, payload) = encode(&exec(), false).unwrap();
        for cut in 0..payload.len() {
            let _ = decode(&payload[..cut]); // must not panic
        }
        assert!(decode(&payload[..payload.len() - 1]).is_err());
        assert!(decode(&[]).is_err(), "no program");
        assert!(decode(&[b'V', 0, 0, 0, 0]).is_err(), "value without a name");
        let odd_user = [b'A', 1, 0, 0, 0, b'x', b'U', 3, 0, 0, 0, 1, 2, 3];
        assert!(decode(&odd_user).is_err(), "a user record of 3 bytes");
        let too_big = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        assert!(decode_header(&too_big).is_err());
    }

    #[test]
    fn failures_carry_the_os_error() {
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        let got = decode_failure(&encode_failure(&enoent));
        assert_eq!(got.kind(), io::ErrorKind::NotFound);
        assert_eq!(got.to_string(), enoent.to_string());
        let other = io::Error::other("odd");
        assert_eq!(decode_failure(&encode_failure(&other)).to_string(), "odd");
        assert_eq!(decode_failure(&[1, 0]).kind(), io::ErrorKind::Other);
    }

    #[test]
    fn rights_messages_are_laid_out_like_cmsg() {
        // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic on their argument.
        let (space, len) = unsafe { (libc::CMSG_SPACE(4), libc::CMSG_LEN(4)) };
        assert_eq!(RIGHTS_SPACE, space as usize);
        assert_eq!(RIGHTS_LEN, len as usize);
        assert_eq!(received_fds(&rights(7)), [7]);
        assert_eq!(received_fds(&[]), Vec::<RawFd>::new());
        assert_eq!(
            received_fds(&rights(7)[..DATA_AT]),
            Vec::<RawFd>::new(),
            "cut short"
        );
    }
}
