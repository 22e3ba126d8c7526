//! `tty: true`: a pseudo-terminal for a container's streams. The container
//! gets the terminal's slave side as stdin, stdout and stderr (so `isatty`
//! is true, as with docker); a thread of the supervisor copies what arrives
//! on the master side into the container's output file, where its logs are
//! read from as for any container. With `stdin_open`, what `berth attach`
//! writes into the FIFO `<container dir>/stdin` goes to the terminal (the
//! same path a container without a terminal reads its stdin from), and
//! `<container dir>/tty` names the slave side so that `attach` can give it
//! its window size. The thread ends when the last holder of the slave side
//! (the container's processes) is gone.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// A new terminal whose output is appended to `output`, fed from `stdin`
/// (a FIFO opened for reading and writing) when given; its slave side.
pub fn open(output: &Path, stdin: Option<OwnedFd>) -> io::Result<OwnedFd> {
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
    if let Some(dir) = output.parent() {
        std::fs::write(dir.join("tty"), path)?;
    }
    let out = OpenOptions::new().create(true).append(true).open(output)?;
    let master = std::fs::File::from(master);
    std::thread::spawn(move || pump(master, out, stdin.map(std::fs::File::from)));
    Ok(OwnedFd::from(slave))
}

/// Terminal output to the output file, and the stdin FIFO's bytes to the
/// terminal, until no process holds the slave side any more.
fn pump(mut master: std::fs::File, mut out: std::fs::File, mut stdin: Option<std::fs::File>) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stdin.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two pollfds we own; a negative fd is skipped by poll.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            // EIO (or POLLHUP with nothing to read) once the container's
            // processes closed the slave side.
            match master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            if let Some(f) = stdin.as_mut() {
                match f.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if master.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    // The FIFO is held open for writing by this thread
                    // itself, so this is not the end of input: stop
                    // watching it rather than spin.
                    _ => stdin = None,
                }
            }
        }
    }
}
