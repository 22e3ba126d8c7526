//! The TCP readiness probe berth gives a service that publishes ports and
//! has no healthcheck of its own (in the compose file or in its image).
//!
//! Why: swarm counts a task without a healthcheck as running the moment
//! its process starts, so a start-first update would retire the old task
//! while the new one is still installing or binding its port. With a
//! healthcheck, swarm keeps the task `starting` until the check passes and
//! only then stops the old one, and `tasks.<service>` (what berth's proxy
//! forwards to) lists it only then.
//!
//! The check runs inside the task's container, whose image can be anything
//! (busybox, distroless, a Node image without `nc`): so the probe is a
//! program of its own, a static x86-64 Linux executable of a few hundred
//! bytes made here, with no libc and no loader. It connects to each port on
//! 127.0.0.1 in turn and exits 0 when every connection was accepted, 1 at
//! the first refused one. It rides in the service's image as a small layer
//! at [`PROBE_PATH`].

use crate::images::Layer;
use berth_engine::backend::BackendError;
use berth_oci::Store;
use bollard::models::HealthConfig;

/// Where the probe appears in a task.
pub const PROBE_PATH: &str = "/.berth/tcp-ready";

const SECOND: i64 = 1_000_000_000;
/// How often the check runs. Docker 20.10 (API 1.41) has no
/// `start_interval`, so this is also how soon a new task is seen ready.
const INTERVAL: i64 = SECOND;
const TIMEOUT: i64 = 2 * SECOND;
/// Failures before the port first accepts do not count for this long: a
/// task that installs its dependencies at start (the seed's
/// `npm install && npm run start`) is not killed for being slow.
const START_PERIOD: i64 = 300 * SECOND;
const RETRIES: i64 = 3;

/// Where the program is loaded: the classic base of a non-PIE executable.
const BASE: u64 = 0x40_0000;
const ELF_HEADER: usize = 64;
const PROGRAM_HEADER: usize = 56;

/// The probe's executable for `ports` (connects to 127.0.0.1:port for each).
pub fn program(ports: &[u16]) -> Vec<u8> {
    const SYS_SOCKET: u32 = 41;
    const SYS_CONNECT: u32 = 42;
    const SYS_EXIT_GROUP: u32 = 231;
    // Per port: socket(AF_INET, SOCK_STREAM, 0); connect(fd, &addr, 16);
    // a non-zero result (refused, or -EBADF after a failed socket) jumps to
    // the failing exit. 46 bytes each.
    const BLOCK: usize = 46;
    let success_len = 2 + 5 + 2;
    let code_start = ELF_HEADER + PROGRAM_HEADER;
    let fail_at = BLOCK * ports.len() + success_len;
    let code_len = fail_at + 5 + 5 + 2;
    let data_start = code_start + code_len;

    let mut code = Vec::with_capacity(code_len);
    let mov_eax = |code: &mut Vec<u8>, v: u32| {
        code.push(0xb8);
        code.extend_from_slice(&v.to_le_bytes());
    };
    for (i, _) in ports.iter().enumerate() {
        let addr = BASE as u32 + (data_start + 16 * i) as u32;
        mov_eax(&mut code, SYS_SOCKET);
        code.extend_from_slice(&[0xbf, 2, 0, 0, 0]); // mov edi, AF_INET
        code.extend_from_slice(&[0xbe, 1, 0, 0, 0]); // mov esi, SOCK_STREAM
        code.extend_from_slice(&[0x31, 0xd2]); // xor edx, edx
        code.extend_from_slice(&[0x0f, 0x05]); // syscall
        code.extend_from_slice(&[0x89, 0xc7]); // mov edi, eax (the fd)
        code.push(0xbe); // mov esi, &sockaddr_in
        code.extend_from_slice(&addr.to_le_bytes());
        code.extend_from_slice(&[0xba, 16, 0, 0, 0]); // mov edx, 16
        mov_eax(&mut code, SYS_CONNECT);
        code.extend_from_slice(&[0x0f, 0x05]); // syscall
        code.extend_from_slice(&[0x85, 0xc0]); // test eax, eax
        let next = code.len() + 6;
        code.extend_from_slice(&[0x0f, 0x85]); // jnz fail
        code.extend_from_slice(&((fail_at as i32) - (next as i32)).to_le_bytes());
    }
    code.extend_from_slice(&[0x31, 0xff]); // xor edi, edi
    mov_eax(&mut code, SYS_EXIT_GROUP);
    code.extend_from_slice(&[0x0f, 0x05]);
    debug_assert_eq!(code.len(), fail_at);
    code.extend_from_slice(&[0xbf, 1, 0, 0, 0]); // mov edi, 1
    mov_eax(&mut code, SYS_EXIT_GROUP);
    code.extend_from_slice(&[0x0f, 0x05]);
    debug_assert_eq!(code.len(), code_len);

    let total = data_start + 16 * ports.len();
    let mut elf = Vec::with_capacity(total);
    // ELF header: 64-bit, little endian, version 1, System V, executable,
    // x86-64, one program header right after this one, no sections.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&0x3eu16.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + code_start as u64).to_le_bytes());
    elf.extend_from_slice(&(ELF_HEADER as u64).to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes());
    elf.extend_from_slice(&(ELF_HEADER as u16).to_le_bytes());
    elf.extend_from_slice(&(PROGRAM_HEADER as u16).to_le_bytes());
    elf.extend_from_slice(&1u16.to_le_bytes());
    elf.extend_from_slice(&[0; 6]);
    // One loadable segment, readable and executable: the whole file.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&(total as u64).to_le_bytes());
    elf.extend_from_slice(&(total as u64).to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&code);
    for port in ports {
        // sockaddr_in: AF_INET, the port in network order, 127.0.0.1.
        elf.extend_from_slice(&2u16.to_le_bytes());
        elf.extend_from_slice(&port.to_be_bytes());
        elf.extend_from_slice(&[127, 0, 0, 1]);
        elf.extend_from_slice(&[0; 8]);
    }
    debug_assert_eq!(elf.len(), total);
    elf
}

/// The TCP ports a probe should check for a service: the targets of its
/// published TCP ports, each once, in order.
pub fn ports(svc: &berth_compose::model::Service) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for p in &svc.ports {
        if p.protocol.eq_ignore_ascii_case("tcp") && !out.contains(&p.target) {
            out.push(p.target);
        }
    }
    out
}

/// The probe for `ports` as a layer at [`PROBE_PATH`] and the healthcheck
/// that runs it; `None` where the nodes could not run it (the probe is
/// x-86-64 code and the nodes run this machine's architecture).
pub fn readiness(
    store: &Store,
    ports: &[u16],
) -> Result<Option<(Layer, HealthConfig)>, BackendError> {
    if !cfg!(target_arch = "x86_64") || ports.is_empty() {
        return Ok(None);
    }
    let layer = crate::images::file_layer(
        store,
        PROBE_PATH,
        0o555,
        &program(ports),
        format!("berth: TCP readiness probe for port(s) {}", list(ports)),
    )?;
    let check = HealthConfig {
        test: Some(vec!["CMD".into(), PROBE_PATH.into()]),
        interval: Some(INTERVAL),
        timeout: Some(TIMEOUT),
        start_period: Some(START_PERIOD),
        retries: Some(RETRIES),
        ..Default::default()
    };
    Ok(Some((layer, check)))
}

/// `3000, 3001`: for the plan and the layer's history.
pub fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_a_well_formed_executable() {
        let elf = program(&[3000, 8080]);
        assert_eq!(&elf[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + (ELF_HEADER + PROGRAM_HEADER) as u64);
        let filesz = u64::from_le_bytes(elf[64 + 32..64 + 40].try_into().unwrap());
        assert_eq!(filesz as usize, elf.len());
        // The last sockaddr names 127.0.0.1:8080.
        let tail = &elf[elf.len() - 16..];
        assert_eq!(&tail[..8], &[2, 0, 0x1f, 0x90, 127, 0, 0, 1]);
    }

    /// Runs the probe on this machine against real sockets: it must say
    /// yes only when every port accepts.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_probe_succeeds_only_when_every_port_accepts() {
        use std::os::unix::fs::PermissionsExt;
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let run = |ports: &[u16]| {
            let path = dir.path().join(format!("probe-{}", list(ports)));
            std::fs::write(&path, program(ports)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::process::Command::new(&path)
                .status()
                .unwrap()
                .code()
                .unwrap()
        };
        assert_eq!(run(&[open_port]), 0);
        assert_eq!(run(&[closed_port]), 1);
        assert_eq!(run(&[open_port, closed_port]), 1);
        assert_eq!(run(&[closed_port, open_port]), 1);
        assert_eq!(run(&[open_port, open_port]), 0);
    }

    #[test]
    fn published_tcp_targets_are_probed_once_each() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  web:\n    image: x\n    ports: [\"8080:3000\", \"8081:3000\", \"9000:9000/udp\", \"443:8443\"]\n",
        )
        .unwrap();
        let options = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        };
        let p = berth_compose::load(&options).expect("loads").project;
        assert_eq!(ports(&p.services["web"]), vec![3000, 8443]);
    }
}
