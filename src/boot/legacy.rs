//! Mayu's boot-port routes, served when `compat.mayu` is configured and only to addresses in
//! its `allow_from`: `/ipxebootscript` (answered with the chain script, so the machine then
//! registers as any other), `/images/vmlinuz`, `/images/initrd.cpio.gz` and
//! `/images/<serial>/{vmlinuz,initrd.cpio.gz}` (the kernel and initrd of the machine's
//! profile image, or the default profile's for a machine not known yet). `/ignition?uuid=&serial=`
//! is handled with the other configs in [`super::machine`].

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{BootError, BootState, ClientIp};

/// Mayu's "no serial here": QEMU's and some boards' placeholder, so the UUID names the machine.
const PLACEHOLDER_SERIAL: &str = "0123456789";

/// Refuses a client outside `compat.mayu.allow_from` (403 with the reason).
pub(super) fn allowed(s: &BootState, ip: Option<IpAddr>) -> Result<(), BootError> {
    let compat = s.engine.config().compat.mayu.as_ref();
    match (compat, ip) {
        (Some(c), Some(ip)) if c.allows(ip) => Ok(()),
        (_, ip) => Err(BootError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "Mayu's routes answer only addresses in compat.mayu.allow_from; {} is not one",
                ip.map(|i| i.to_string())
                    .unwrap_or_else(|| "this client".into())
            ),
        )),
    }
}

/// The machine Mayu's `?uuid=&serial=` names: the serial, unless it is empty or a
/// placeholder, else the UUID.
pub(super) fn named(s: &BootState, uuid: Option<&str>, serial: Option<&str>) -> Option<String> {
    let serial = serial
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != PLACEHOLDER_SERIAL);
    let key = serial.or(uuid.map(str::trim).filter(|v| !v.is_empty()))?;
    s.engine.find_host(key).map(|m| m.id.to_string())
}

/// `GET /ipxebootscript`.
pub async fn ipxe_boot_script(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
) -> Result<Response, BootError> {
    allowed(&s, ip)?;
    Ok(super::ipxe::chain(State(s)).await.into_response())
}

/// `GET /images/{file}`: the default profile's kernel or initrd.
pub async fn image(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    allowed(&s, ip)?;
    asset(s, ip, method, None, &file, headers).await
}

/// `GET /images/{serial}/{file}`: that machine's kernel or initrd.
pub async fn machine_image(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path((serial, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    allowed(&s, ip)?;
    asset(s, ip, method, Some(&serial), &file, headers).await
}

/// Which of Mayu's two asset names, as a test on our file names.
fn wanted(file: &str) -> Result<fn(&str) -> u8, BootError> {
    fn kernel(name: &str) -> u8 {
        match name {
            "vmlinuz" => 3,
            n if n.ends_with("vmlinuz") => 2,
            n if n.contains("vmlinuz") || n.contains("kernel") => 1,
            _ => 0,
        }
    }
    fn initrd(name: &str) -> u8 {
        match name {
            "initrd.cpio.gz" => 3,
            n if n.ends_with(".cpio.gz") => 2,
            n if n.contains("initrd") || n.contains("initramfs") || n.contains("cpio") => 1,
            _ => 0,
        }
    }
    match file {
        "vmlinuz" => Ok(kernel),
        "initrd.cpio.gz" => Ok(initrd),
        other => Err(BootError::not_found(format!(
            "Mayu's /images serves `vmlinuz` and `initrd.cpio.gz`; `{}` is not served here",
            crate::text::escape_control(other)
        ))),
    }
}

/// The best-matching file in `images/<dir>`: signatures, checksums and hidden files never.
fn pick(root: &std::path::Path, dir: &str, score: fn(&str) -> u8) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && ![".sig", ".asc", ".sha256", ".sha512", ".DIGESTS", ".json"]
                    .iter()
                    .any(|ext| n.ends_with(ext))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (score(&n), n))
        .filter(|(sc, _)| *sc > 0)
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .map(|(_, n)| n)
}

async fn asset(
    s: BootState,
    ip: Option<IpAddr>,
    method: Method,
    serial: Option<&str>,
    file: &str,
    headers: HeaderMap,
) -> Result<Response, BootError> {
    let score = wanted(file)?;
    let config = s.engine.config().clone();
    let machine = serial.and_then(|k| s.engine.find_host(k));
    let profile_name = machine
        .as_ref()
        .and_then(|m| m.profile.clone())
        .or_else(|| config.default_profile.clone());
    let Some(profile) = profile_name.as_deref().and_then(|p| config.profile(p)) else {
        return Err(BootError::not_found(
            "no profile to take the image from: the machine has none and there is no default_profile",
        ));
    };
    let overrides = machine
        .as_ref()
        .map(|m| m.overrides.clone())
        .unwrap_or_default();
    let dir = crate::images::asset_dir(&config, profile, &overrides);
    let root = config.images.clone();
    let (d, found) = tokio::task::spawn_blocking(move || {
        let f = pick(&root, &dir, score);
        (dir, f)
    })
    .await
    .map_err(|e| BootError::internal(e.to_string()))?;
    let Some(name) = found else {
        return Err(BootError::not_found(format!(
            "image {d} has no file that is a {file}"
        )));
    };
    let id = machine.map(|m| m.id.to_string());
    super::assets::serve_for(s, ip, method, d, name, id, headers).await
}
