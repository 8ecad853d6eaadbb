//! The network boot programs of the TFTP root (iPXE builds), served read-only over HTTP for
//! UEFI HTTP boot: the firmware gets `http://<boot address>/boot/ipxe.efi` from DHCP and never
//! speaks TFTP. Only the programs dnsmasq hands out can be fetched; nothing else in the folder.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;

use super::{BootError, BootState, ClientIp};
use crate::dnsmasq::conf::{ARM64_PROGRAM, BIOS_PROGRAM, EFI64_PROGRAM, EFI64_SNP_PROGRAM};
use crate::machine::{MachineId, Phase};
use crate::Engine;

/// The names `GET /boot/{file}` serves: the boot programs dnsmasq may hand out.
pub const SERVED: [&str; 4] = [
    EFI64_PROGRAM,
    EFI64_SNP_PROGRAM,
    ARM64_PROGRAM,
    BIOS_PROGRAM,
];

/// The machine holding the client's lease, when it is known.
fn who(engine: &Engine, ip: Option<IpAddr>) -> Option<MachineId> {
    let IpAddr::V4(v4) = ip? else {
        return None;
    };
    engine
        .leases()
        .into_iter()
        .find(|l| l.ip == v4)
        .and_then(|l| l.machine)
}

pub async fn program(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path(file): Path<String>,
) -> Result<Response, BootError> {
    if !SERVED.contains(&file.as_str()) {
        return Err(BootError::not_found(format!(
            "no boot program `{file}`; served are {}",
            SERVED.join(", ")
        )));
    }
    let path = s.engine.config().tftproot.join(&file);
    // Boot programs are well under a megabyte: read whole, so the step reports what went out.
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BootError::not_found(format!(
                "{file} is not in the TFTP root {}; run scripts/fill-tftproot.sh",
                s.engine.config().tftproot.display()
            ))
        } else {
            BootError::internal(format!("cannot read {}: {e}", path.display()))
        }
    })?;
    let len = bytes.len();
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/efi")
        .header(header::CONTENT_LENGTH, len);
    // UEFI's HTTP boot client asks for the size first (HEAD), then fetches.
    if method == Method::HEAD {
        return builder
            .body(Body::empty())
            .map_err(|e| BootError::internal(e.to_string()));
    }
    let machine = who(&s.engine, ip);
    let client = ip.map(|i| format!(" to {i}")).unwrap_or_default();
    s.engine.boot_step(
        machine.as_ref(),
        Phase::Dhcp,
        format!("boot program {file} sent over HTTP{client}"),
        Some(len as u64),
        None,
    );
    builder
        .body(Body::from(bytes))
        .map_err(|e| BootError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boot_programs_are_served() {
        assert!(SERVED.contains(&"ipxe.efi"));
        assert!(SERVED.contains(&"undionly.kpxe"));
        for other in ["", "..", "boot.ipxe", "../config.yaml", "pxelinux.cfg"] {
            assert!(!SERVED.contains(&other), "{other}");
        }
    }
}
