//! berth's seccomp compiler: an OCI `linux.seccomp` to a classic BPF
//! program the kernel runs on every syscall, with no C library.
//!
//! libcontainer compiles profiles with libseccomp (a C library, and a
//! build-time `-lseccomp`). The `seccompiler` crate (Firecracker's) was
//! considered: it gives a whole filter a single match action, while docker's
//! profile format gives every rule its own (ALLOW here, `ERRNO(ENOSYS)` for
//! `clone3` there), so it does not fit.
//!
//! The program, for x86_64:
//! - `seccomp_data.arch` must be `AUDIT_ARCH_X86_64` and the syscall number
//!   must not carry `__X32_SYSCALL_BIT`: anything else (i386 `int 0x80`,
//!   the x32 ABI) kills the process, as the numbers below mean nothing there;
//! - then one block per syscall number named by the profile: its rules in
//!   the profile's order, the first whose argument conditions all hold
//!   decides, else the default action;
//! - any other number gets the default action.
//!
//! Names the table does not know (docker's profiles name syscalls of other
//! architectures) are skipped, as libseccomp does.

use libcontainer::oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator,
};
use std::collections::BTreeMap;

/// One cBPF instruction, as the kernel's `struct sock_filter`.
pub type Insn = libc::sock_filter;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("seccomp: architecture {0} is not supported")]
    UnsupportedArch(&'static str),
    #[error("seccomp: action {0} is not supported by berth")]
    UnsupportedAction(LinuxSeccompAction),
    #[error("seccomp: rule for {name} compares argument {index}; syscalls have 6 (0-5)")]
    BadArgIndex { name: String, index: usize },
    #[error("seccomp: rule for {name} has too many argument conditions to compile")]
    TooManyConditions { name: String },
    #[error("seccomp: the profile compiles to {0} instructions; the kernel takes at most 4096")]
    TooLong(usize),
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): BPF_LD (0) |
// BPF_W (0) | BPF_ABS (0x20), and so on.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

// linux/seccomp.h
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 ABI syscalls carry this bit in their number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's `BPF_MAXINSNS`.
const MAX_INSNS: usize = 4096;
const EPERM: u32 = 1;

// Offsets in `struct seccomp_data`: nr (i32), arch (u32), ip (u64),
// args (u64[6]); little-endian, so an argument's low word comes first.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(index: usize) -> u32 {
    16 + 8 * index as u32
}
fn off_arg_hi(index: usize) -> u32 {
    off_arg_lo(index) + 4
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The syscall table of this host's architecture.
fn table() -> Result<&'static [(&'static str, u32)], CompileError> {
    if cfg!(target_arch = "x86_64") {
        Ok(super::syscalls_x86_64::SYSCALLS)
    } else {
        Err(CompileError::UnsupportedArch(std::env::consts::ARCH))
    }
}

fn syscall_number(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// The `SECCOMP_RET_*` value of an action.
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32, CompileError> {
    // A data field is 16 bits wide; OCI's default for errnoRet is EPERM.
    let data = errno_ret.unwrap_or(EPERM) & 0xffff;
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        // Needs a listener process berth does not run.
        LinuxSeccompAction::ScmpActNotify => return Err(CompileError::UnsupportedAction(action)),
    })
}

/// Code that falls through when `arg` holds and jumps `fail` instructions
/// past its own end when it does not.
fn condition(arg: &LinuxSeccompArg, fail: usize) -> Vec<Insn> {
    let i = arg.index();
    let (hi, lo) = ((arg.value() >> 32) as u32, arg.value() as u32);
    // Each pattern is written with `F` = the distance from the instruction
    // after the jump to the end of the pattern, plus `fail`.
    let f = |end: usize| -> usize { end + fail };
    let ld_hi = stmt(BPF_LD_W_ABS, off_arg_hi(i));
    let ld_lo = stmt(BPF_LD_W_ABS, off_arg_lo(i));
    // Offsets are checked by the caller (`fail` is at most 255 minus the
    // pattern's length): the casts cannot truncate.
    let j = |n: usize| n as u8;
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => vec![
            ld_hi,
            jump(BPF_JMP_JEQ_K, hi, 0, j(f(2))),
            ld_lo,
            jump(BPF_JMP_JEQ_K, lo, 0, j(f(0))),
        ],
        LinuxSeccompOperator::ScmpCmpNe => vec![
            ld_hi,
            jump(BPF_JMP_JEQ_K, hi, 0, 2),
            ld_lo,
            jump(BPF_JMP_JEQ_K, lo, j(f(0)), 0),
        ],
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let datum = arg.value_two().unwrap_or(0);
            let (dhi, dlo) = ((datum >> 32) as u32, datum as u32);
            vec![
                ld_hi,
                stmt(BPF_ALU_AND_K, hi),
                jump(BPF_JMP_JEQ_K, dhi, 0, j(f(3))),
                ld_lo,
                stmt(BPF_ALU_AND_K, lo),
                jump(BPF_JMP_JEQ_K, dlo, 0, j(f(0))),
            ]
        }
        // Greater: the high words decide unless equal, then the low ones.
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let last = if arg.op() == LinuxSeccompOperator::ScmpCmpGt {
                BPF_JMP_JGT_K
            } else {
                BPF_JMP_JGE_K
            };
            vec![
                ld_hi,
                jump(BPF_JMP_JGT_K, hi, 3, 0),
                jump(BPF_JMP_JEQ_K, hi, 0, j(f(2))),
                ld_lo,
                jump(last, lo, 0, j(f(0))),
            ]
        }
        // Less: the negation of greater-or-equal (less-or-equal: of greater).
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            let last = if arg.op() == LinuxSeccompOperator::ScmpCmpLt {
                BPF_JMP_JGE_K
            } else {
                BPF_JMP_JGT_K
            };
            vec![
                ld_hi,
                jump(BPF_JMP_JGT_K, hi, j(f(3)), 0),
                jump(BPF_JMP_JEQ_K, hi, 0, 2),
                ld_lo,
                jump(last, lo, j(f(0)), 0),
            ]
        }
    }
}

/// The longest pattern `condition` emits.
const MAX_CONDITION_LEN: usize = 6;

struct Rule<'a> {
    name: &'a str,
    ret: u32,
    args: &'a [LinuxSeccompArg],
}

/// A syscall's rules in order, then the default action; every path returns.
fn block(rules: &[Rule], default: u32) -> Result<Vec<Insn>, CompileError> {
    let mut out = Vec::new();
    for rule in rules {
        if let Some(arg) = rule.args.iter().find(|a| a.index() > 5) {
            return Err(CompileError::BadArgIndex {
                name: rule.name.to_string(),
                index: arg.index(),
            });
        }
        // A failed condition skips the rest of the rule (conditions after
        // it, then its `ret`); built backwards so each knows that distance.
        let mut tail = vec![stmt(BPF_RET_K, rule.ret)];
        for arg in rule.args.iter().rev() {
            let fail = tail.len();
            if fail + MAX_CONDITION_LEN > u8::MAX as usize {
                return Err(CompileError::TooManyConditions {
                    name: rule.name.to_string(),
                });
            }
            let mut code = condition(arg, fail);
            code.extend(tail);
            tail = code;
        }
        out.extend(tail);
        if rule.args.is_empty() {
            // Later rules for this syscall can never match.
            return Ok(out);
        }
    }
    out.push(stmt(BPF_RET_K, default));
    Ok(out)
}

/// Compile `seccomp` for this host's architecture.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Vec<Insn>, CompileError> {
    let table = table()?;
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut by_number: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for syscall in seccomp.syscalls().iter().flatten() {
        let ret = action(syscall.action(), syscall.errno_ret())?;
        let args = syscall.args().as_deref().unwrap_or_default();
        for name in syscall.names() {
            if let Some(nr) = syscall_number(table, name) {
                by_number
                    .entry(nr)
                    .or_default()
                    .push(Rule { name, ret, args });
            }
        }
    }
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
    ];
    for (nr, rules) in &by_number {
        let body = block(rules, default)?;
        // The accumulator holds the number here: every block returns, and
        // non-matching numbers jump over whole blocks.
        match u8::try_from(body.len()) {
            Ok(skip) => prog.push(jump(BPF_JMP_JEQ_K, *nr, 0, skip)),
            // Too far for a conditional jump: through an unconditional one.
            Err(_) => {
                prog.push(jump(BPF_JMP_JEQ_K, *nr, 1, 0));
                prog.push(stmt(BPF_JMP_JA, body.len() as u32));
            }
        }
        prog.extend(body);
    }
    prog.push(stmt(BPF_RET_K, default));
    if prog.len() > MAX_INSNS {
        return Err(CompileError::TooLong(prog.len()));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::LinuxSeccomp;
    use serde_json::json;

    /// The kernel's `struct seccomp_data`.
    #[derive(Clone, Copy)]
    struct Data {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    fn data(nr: u32, args: &[u64]) -> Data {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: a,
        }
    }

    /// A classic BPF interpreter for the instructions the compiler emits,
    /// checking what the kernel's verifier would: jumps stay in the program
    /// and every path ends in a return.
    fn run(prog: &[Insn], d: Data) -> u32 {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&d.nr.to_le_bytes());
        bytes[4..8].copy_from_slice(&d.arch.to_le_bytes());
        for (i, a) in d.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = prog.get(pc).expect("ran off the end of the program");
            let k = insn.k;
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    let at = k as usize;
                    acc = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                }
                BPF_ALU_AND_K => acc &= k,
                BPF_JMP_JA => pc += k as usize,
                BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K => {
                    let taken = match insn.code {
                        BPF_JMP_JEQ_K => acc == k,
                        BPF_JMP_JGT_K => acc > k,
                        _ => acc >= k,
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                BPF_RET_K => return k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn nr(name: &str) -> u32 {
        syscall_number(table().unwrap(), name).unwrap()
    }

    fn compile_json(v: serde_json::Value) -> Vec<Insn> {
        let seccomp: LinuxSeccomp = serde_json::from_value(v).unwrap();
        compile(&seccomp).unwrap()
    }

    fn default_profile(caps: &[&str]) -> Vec<Insn> {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        compile_json(super::super::Profile::default_profile().to_oci(&caps))
    }

    const EPERM_RET: u32 = RET_ERRNO | 1;

    #[test]
    fn the_table_is_sorted_and_knows_the_common_syscalls() {
        let table = super::super::syscalls_x86_64::SYSCALLS;
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(nr("read"), 0);
        assert_eq!(nr("execve"), 59);
        assert_eq!(nr("clone3"), 435);
        assert_eq!(nr("fchmodat2"), 452);
        assert_eq!(syscall_number(table, "arm_fadvise64_64"), None);
    }

    /// The default profile lets ordinary syscalls through and denies the
    /// privileged ones with EPERM.
    #[test]
    fn default_profile_allows_and_denies() {
        let prog = default_profile(&[]);
        for ok in ["read", "write", "execve", "exit_group", "capset", "prctl"] {
            assert_eq!(run(&prog, data(nr(ok), &[])), RET_ALLOW, "{ok}");
        }
        for denied in ["mount", "unshare", "keyctl", "init_module", "reboot", "bpf"] {
            assert_eq!(run(&prog, data(nr(denied), &[])), EPERM_RET, "{denied}");
        }
        // Numbers no rule names get the default.
        assert_eq!(run(&prog, data(999, &[])), EPERM_RET);
        // clone3 gets ENOSYS so that libc falls back to clone.
        assert_eq!(run(&prog, data(nr("clone3"), &[])), RET_ERRNO | 38);

        let admin = default_profile(&["CAP_SYS_ADMIN"]);
        assert_eq!(run(&admin, data(nr("mount"), &[])), RET_ALLOW);
        assert_eq!(run(&admin, data(nr("clone3"), &[])), RET_ALLOW);
    }

    /// clone may not create namespaces without CAP_SYS_ADMIN (a masked
    /// comparison), whatever the upper bits of the flags.
    #[test]
    fn clone_flags_are_checked() {
        let prog = default_profile(&[]);
        let clone = nr("clone");
        let thread = 0x3d0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|...
        assert_eq!(run(&prog, data(clone, &[thread])), RET_ALLOW);
        assert_eq!(run(&prog, data(clone, &[0x11])), RET_ALLOW);
        assert_eq!(run(&prog, data(clone, &[0x1000_0000 | 0x11])), EPERM_RET);
        assert_eq!(run(&prog, data(clone, &[0x2000_0000])), EPERM_RET);
        assert_eq!(run(&prog, data(clone, &[0x1_0000_0000 | 0x11])), RET_ALLOW);
        let admin = default_profile(&["CAP_SYS_ADMIN"]);
        assert_eq!(run(&admin, data(clone, &[0x1000_0000])), RET_ALLOW);
    }

    /// personality is allowed only for the listed personas, compared on all
    /// 64 bits.
    #[test]
    fn personality_values_are_checked() {
        let prog = default_profile(&[]);
        let p = nr("personality");
        for ok in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(run(&prog, data(p, &[ok])), RET_ALLOW, "{ok:#x}");
        }
        for bad in [1, 0x0040_0000, 0x1_0000_0000, 0xffff_ffff_ffff_ffff] {
            assert_eq!(run(&prog, data(p, &[bad])), EPERM_RET, "{bad:#x}");
        }
    }

    /// Other architectures and the x32 ABI are killed before any rule is
    /// read: their numbers mean other syscalls.
    #[test]
    fn foreign_architectures_are_killed() {
        let prog = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        let mut i386 = data(1, &[]);
        i386.arch = 0x4000_0003; // AUDIT_ARCH_I386
        assert_eq!(run(&prog, i386), RET_KILL_PROCESS);
        assert_eq!(run(&prog, data(X32_SYSCALL_BIT | 1, &[])), RET_KILL_PROCESS);
        assert_eq!(run(&prog, data(1, &[])), RET_ALLOW);
    }

    /// Every comparison operator, on both 32-bit halves of an argument.
    #[test]
    fn comparisons_split_64_bit_arguments() {
        let big = 0x1_0000_0005u64;
        let cases: &[(&str, &[(u64, bool)])] = &[
            ("SCMP_CMP_EQ", &[(big, true), (5, false), (big + 1, false)]),
            (
                "SCMP_CMP_NE",
                &[(big, false), (5, true), (0x2_0000_0005, true)],
            ),
            (
                "SCMP_CMP_LT",
                &[
                    (big, false),
                    (5, true),
                    (big - 1, true),
                    (0x1_0000_0006, false),
                    (0x2_0000_0000, false),
                ],
            ),
            (
                "SCMP_CMP_LE",
                &[
                    (big, true),
                    (5, true),
                    (big + 1, false),
                    (0x2_0000_0000, false),
                ],
            ),
            (
                "SCMP_CMP_GT",
                &[
                    (big, false),
                    (big + 1, true),
                    (0xffff_ffff, false),
                    (0x2_0000_0000, true),
                ],
            ),
            (
                "SCMP_CMP_GE",
                &[
                    (big, true),
                    (big - 1, false),
                    (0x1_0000_0004, false),
                    (0x2_0000_0000, true),
                ],
            ),
        ];
        for (op, values) in cases {
            let prog = compile_json(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                              "args": [{"index": 1, "value": big, "op": op}]}],
            }));
            for (value, matches) in *values {
                let want = if *matches { RET_ERRNO | 3 } else { RET_ALLOW };
                let got = run(&prog, data(nr("kill"), &[0, *value]));
                assert_eq!(got, want, "{op} {value:#x}");
            }
        }
        let prog = compile_json(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_KILL",
                          "args": [{"index": 2, "value": 0xff00_0000_00ffu64, "valueTwo": 0x1200_0000_0034u64,
                                    "op": "SCMP_CMP_MASKED_EQ"}]}],
        }));
        let kill = nr("kill");
        assert_eq!(
            run(&prog, data(kill, &[0, 0, 0x1233_0000_5534])),
            RET_KILL_THREAD
        );
        assert_eq!(run(&prog, data(kill, &[0, 0, 0x1333_0000_5534])), RET_ALLOW);
        assert_eq!(run(&prog, data(kill, &[0, 0, 0x1233_0000_5535])), RET_ALLOW);
    }

    /// Rules apply in order, all conditions of a rule must hold, and each
    /// action has its own return value.
    #[test]
    fn first_full_match_wins() {
        let prog = compile_json(json!({
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "syscalls": [
                {"names": ["ioctl"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["ioctl", "no_such_syscall"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["ioctl"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            ],
        }));
        let ioctl = nr("ioctl");
        assert_eq!(run(&prog, data(ioctl, &[1, 2])), RET_TRAP);
        assert_eq!(run(&prog, data(ioctl, &[1, 3])), RET_LOG);
        assert_eq!(run(&prog, data(ioctl, &[2, 2])), RET_TRACE | 7);
        // errnoRet defaults to EPERM.
        assert_eq!(run(&prog, data(nr("getpid"), &[])), EPERM_RET);
        assert_eq!(run(&prog, data(nr("read"), &[])), RET_KILL_PROCESS);
    }

    /// A syscall with more rules than a conditional jump can skip, and
    /// programs with hundreds of syscalls, still decide correctly.
    #[test]
    fn long_blocks_jump_through_trampolines() {
        let rules: Vec<_> = (0..100u64)
            .map(|v| {
                json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": v + 100,
                       "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
            })
            .chain(std::iter::once(
                json!({"names": ["read", "write", "sync"], "action": "SCMP_ACT_ALLOW"}),
            ))
            .collect();
        let prog = compile_json(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}));
        assert!(prog.len() > 400);
        let p = nr("personality");
        for v in [0u64, 50, 99] {
            assert_eq!(run(&prog, data(p, &[v])), RET_ERRNO | (v as u32 + 100));
        }
        assert_eq!(run(&prog, data(p, &[100])), EPERM_RET);
        assert_eq!(run(&prog, data(nr("write"), &[])), RET_ALLOW);
        assert_eq!(run(&prog, data(nr("read"), &[])), RET_ALLOW);
        assert_eq!(run(&prog, data(nr("mount"), &[])), EPERM_RET);
        // After the long block in number order: reached only past it.
        assert_eq!(run(&prog, data(nr("sync"), &[])), RET_ALLOW);
        assert!(prog.iter().any(|i| i.code == BPF_JMP_JA && i.k > 255));

        // Every syscall the table knows, each its own errno.
        let all: Vec<_> = super::super::syscalls_x86_64::SYSCALLS
            .iter()
            .map(|(n, v)| json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": v}))
            .collect();
        let prog = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": all}));
        for (_, v) in super::super::syscalls_x86_64::SYSCALLS {
            assert_eq!(run(&prog, data(*v, &[])), RET_ERRNO | v);
        }
        assert_eq!(run(&prog, data(1000, &[])), RET_ALLOW);
    }

    #[test]
    fn unsupported_profiles_are_errors() {
        let notify: LinuxSeccomp =
            serde_json::from_value(json!({"defaultAction": "SCMP_ACT_NOTIFY"})).unwrap();
        assert!(compile(&notify)
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_NOTIFY"));
        let bad: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}],
        }))
        .unwrap();
        assert!(matches!(
            compile(&bad),
            Err(CompileError::BadArgIndex { index: 6, .. })
        ));
    }
}
