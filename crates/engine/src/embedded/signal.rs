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

/// Does process `pid` have a handler for `signal` (`SigCgt` in its status)?
/// When unsure, say yes: then the normal stop path with its timeout runs.
pub fn catches(pid: i32, signal: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << (signal - 1)) != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_numbers() {
        assert_eq!(super::parse("SIGTERM"), Some(15));
        assert_eq!(super::parse("quit"), Some(3));
        assert_eq!(super::parse("SIGUSR1"), Some(10));
        assert_eq!(super::parse("9"), Some(9));
        assert_eq!(super::parse("SIGNOPE"), None);
        assert_eq!(super::parse("0"), None);
    }

    #[test]
    fn this_process_is_read() {
        // The test harness installs no SIGTERM handler.
        assert!(!super::catches(std::process::id() as i32, super::SIGTERM));
        // An unknown process is assumed to handle it (the safe default).
        assert!(super::catches(i32::MAX, super::SIGTERM));
    }
}
