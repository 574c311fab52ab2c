//! A tiny single-layer OCI image layout, built by hand: a real ustar layer holding one small
//! file with per-run random content (so every run pushes fresh blobs), gzip-wrapped with stored
//! deflate blocks (valid gzip, no compression library needed), a config whose `rootfs.diff_ids`
//! is the digest of the uncompressed tar, a manifest and `index.json`. Usable as
//! `oci:DIR:latest` by skopeo and podman, and pullable by dockerd once pushed.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct OciImage {
    pub dir: PathBuf,
    pub tag: String,
    pub nonce: String,
    pub config_digest: String,
    pub layer_digest: String,
}

impl OciImage {
    /// `oci:DIR:TAG` for skopeo.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    fs::write(dir.join("blobs/sha256").join(&hex), data).expect("write blob");
    format!("sha256:{hex}")
}

fn octal(field: &mut [u8], value: u64) {
    // NUL-terminated, zero-padded octal filling the field.
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    assert!(s.len() <= width, "tar field overflow");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

/// A POSIX ustar archive of regular files (mode 0644, uid/gid 0, mtime 0).
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in files {
        assert!(name.len() < 100, "tar name too long");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], content.len() as u64);
        octal(&mut h[136..148], 0);
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let chk = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(chk.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// gzip (RFC 1952) with stored deflate blocks (RFC 1951 BTYPE=00).
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65_535).collect()
    };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.push(u8::from(i + 1 == n));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Writes the layout into `dir` (created) under `tag`.
pub fn build(dir: &Path, tag: &str) -> OciImage {
    let nonce = random_hex(12);
    fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir blobs");
    let hello = format!("hello from registry-auth integration tests, run {nonce}\n");
    let layer_tar = tar(&[("hello.txt", hello.as_bytes())]);
    let diff_id = format!("sha256:{}", sha256_hex(&layer_tar));
    let layer_gz = gzip_stored(&layer_tar);
    let layer_digest = put_blob(dir, &layer_gz);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello.txt"], "Labels": {"registry-auth.test.nonce": nonce}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "registry-auth integration tests"}],
    }))
    .expect("config json");
    let config_digest = put_blob(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_gz.len(),
        }],
    }))
    .expect("manifest json");
    let manifest_digest = put_blob(dir, &manifest);
    let manifest_size = manifest.len();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index json"),
    )
    .expect("write index.json");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    OciImage {
        dir: dir.to_owned(),
        tag: tag.to_owned(),
        nonce,
        config_digest,
        layer_digest,
    }
}

/// Checks that an OCI layout written by `skopeo copy … oci:DIR:TAG` holds our layer
/// (by digest, or by diff_id if the client recompressed it) and our nonce in the config.
pub fn pulled_layout_matches(dir: &Path, img: &OciImage) -> Result<(), String> {
    let index: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("index.json")).map_err(|e| format!("no index.json: {e}"))?,
    )
    .map_err(|e| format!("index.json: {e}"))?;
    if index["manifests"].as_array().is_none_or(Vec::is_empty) {
        return Err(format!("pulled index.json lists no manifest: {index}"));
    }
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    if blob(&img.layer_digest).is_file() && blob(&img.config_digest).is_file() {
        return Ok(());
    }
    // Recompressed by the client: look for our nonce in some config blob.
    let entries = fs::read_dir(dir.join("blobs/sha256")).map_err(|e| e.to_string())?;
    for e in entries.flatten() {
        let data = fs::read(e.path()).unwrap_or_default();
        if data.len() < 65_536 && String::from_utf8_lossy(&data).contains(&img.nonce) {
            return Ok(());
        }
    }
    Err(format!(
        "pulled layout at {} holds neither layer {} nor the run nonce {}",
        dir.display(),
        img.layer_digest,
        img.nonce
    ))
}
