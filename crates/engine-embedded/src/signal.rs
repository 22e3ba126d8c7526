//! Stop signals: compose's `stop_signal` names, and whether PID 1 catches one.

use std::fs;

pub const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;

/// `SIGTERM`, `TERM`, `15`, … → the signal number (Linux x86-64/arm64 numbering).
pub fn parse(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match bare {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    };
    Some(n)
}

/// Does process `pid` take `signal`: a handler for it (`SigCgt`), or the
/// signal blocked to be taken with `sigwait` (`SigBlk`)? berth-init takes
/// every signal with sigwait, during which the kernel shows its mask as
/// empty, so it is recognised by name. When unsure, say yes: then the
/// normal stop path with its timeout runs.
pub fn catches(pid: i32, signal: i32) -> bool {
    if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "berth-init") {
        return true;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
    };
    match (mask("SigCgt:"), mask("SigBlk:")) {
        (Some(caught), blocked) => (caught | blocked.unwrap_or(0)) & (1 << (signal - 1)) != 0,
        (None, _) => true,
    }
}

/// Why a container's PID 1 (host pid `pid`) is still running after its
/// stop signal, in words a user can act on: most often a shell or a package
/// manager as PID 1 that never passes the signal on to the process doing
/// the work (the seed runs `npm`, whose child `node` never hears SIGTERM).
pub fn why_still_running(pid: i32, signal: i32) -> String {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    let children = child_count(pid);
    let name = name_of(signal);
    if children > 0 {
        let what = if children == 1 {
            "its child process".to_string()
        } else {
            format!("its {children} child processes")
        };
        format!(
            "PID 1 is `{comm}`, which did not pass {name} on to {what}; \
             `init: true` runs an init that forwards it"
        )
    } else {
        format!("PID 1 (`{comm}`) did not exit on {name}; handle it, or set `stop_signal`")
    }
}

/// How many processes have `pid` as their parent.
fn child_count(pid: i32) -> usize {
    // The kernel's own lists, one per thread (a child belongs to the
    // thread that forked it), when it keeps them (CONFIG_PROC_CHILDREN).
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let lists: Vec<String> = tasks
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
            .collect();
        if !lists.is_empty() {
            return lists.iter().map(|l| l.split_whitespace().count()).sum();
        }
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid …`: comm may hold spaces and
                // parentheses, so count from the last `)`.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|ppid| ppid.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .count()
}

/// `SIGTERM` for 15, `signal 40` for one without a name.
pub fn name_of(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    usize::try_from(signal - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map(|n| format!("SIG{n}"))
        .unwrap_or_else(|| format!("signal {signal}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signal_names_round_trip() {
        for n in 1..=31 {
            assert_eq!(super::parse(&super::name_of(n)), Some(n));
        }
        assert_eq!(super::name_of(15), "SIGTERM");
        assert_eq!(super::name_of(40), "signal 40");
    }

    #[test]
    fn a_shell_that_keeps_its_child_is_named() {
        // This test process's own child: PID 1 stands in for any parent.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let why = super::why_still_running(me, 15);
        let _ = child.kill();
        let _ = child.wait();
        assert!(why.contains("did not pass SIGTERM on to"), "{why}");
        assert!(why.contains("init: true"), "{why}");
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(super::parse("SIGTERM"), Some(15));
        assert_eq!(super::parse("quit"), Some(3));
        assert_eq!(super::parse("SIGUSR1"), Some(10));
        assert_eq!(super::parse("9"), Some(9));
        assert_eq!(super::parse("SIGNOPE"), None);
        assert_eq!(super::parse("0"), None);
    }

    /// A `sleep` whose signal mask is empty, or blocks SIGTERM.
    fn sleeper(block_term: bool) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: only async-signal-safe calls on a local sigset.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                if block_term {
                    libc::sigaddset(&mut set, libc::SIGTERM);
                }
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    #[test]
    fn handlers_and_blocked_signals_count_as_taken() {
        let mut plain = sleeper(false);
        let mut blocking = sleeper(true);
        // Give exec a moment: until then /proc shows the pre-exec process.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let plain_takes = super::catches(plain.id() as i32, super::SIGTERM);
        let blocking_takes = super::catches(blocking.id() as i32, super::SIGTERM);
        for c in [&mut plain, &mut blocking] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(!plain_takes, "sleep has no SIGTERM handler");
        assert!(blocking_takes, "a blocked SIGTERM waits to be taken");
        // An unknown process is assumed to take it (the safe default).
        assert!(super::catches(i32::MAX, super::SIGTERM));
    }
}
