//! `tty: true`: a pseudo-terminal for a container's streams. The container
//! gets the terminal's slave side as stdin, stdout and stderr (so `isatty`
//! is true, as with docker); a thread of the supervisor copies what arrives
//! on the master side into the container's output file, where its logs are
//! read from as for any container. The thread ends when the last holder of
//! the slave side (the container's processes) is gone.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// A new terminal whose output is appended to `output`; its slave side.
pub fn open(output: &Path) -> io::Result<OwnedFd> {
    // posix_openpt and friends live in libc itself (openpty would pull in
    // libutil).
    // SAFETY: plain calls on a descriptor we own; ptsname_r writes into our
    // buffer of the length given.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `master` is a new descriptor no one else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&master);
    let mut name = [0u8; 128];
    // SAFETY: see above.
    let ok = unsafe {
        libc::grantpt(raw) == 0
            && libc::unlockpt(raw) == 0
            && libc::ptsname_r(raw, name.as_mut_ptr().cast(), name.len()) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let path = std::str::from_utf8(&name[..len]).map_err(io::Error::other)?;
    use std::os::unix::fs::OpenOptionsExt;
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let mut out = OpenOptions::new().create(true).append(true).open(output)?;
    let mut master = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        // EIO once no process holds the slave side any more.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    Ok(OwnedFd::from(slave))
}
