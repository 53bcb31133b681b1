//! Client-side encryption of chunk files (`files.encryption_key_env`): AES-256-GCM in
//! segments, so a chunk of any size is encrypted and decrypted streaming, in bounded
//! memory, and any change, reordering or truncation of the file fails its check.
//!
//! ```text
//! "DBHAULE1"                                  8 bytes, the format
//! nonce ‖ data key sealed under the task key  12 + 32 + 16 bytes (AES-256-GCM, AAD = format)
//! segment nonce prefix                        7 bytes, random
//! segments                                    each ≤ 64 KiB of data + 16-byte tag
//! ```
//!
//! Each chunk has its own random data key; segment `i` is sealed with the nonce
//! `prefix ‖ i (big-endian u32) ‖ last (0 or 1)` — the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár), so segments cannot be reordered, dropped or cut off
//! without the check failing. The cipher is aws-lc-rs's AES-256-GCM (the one rustls uses).

use std::io::{self, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

#[cfg(test)]
use crate::config::Secret;
pub use crate::config::TaskKey;

/// The manifest's name for the format.
pub const FORMAT_NAME: &str = "aes-256-gcm-stream (DBHAULE1, 64 KiB segments)";
/// The first bytes of every encrypted chunk.
pub const MAGIC: &[u8; 8] = b"DBHAULE1";
/// Data per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const KEY: usize = crate::config::KEY_BYTES;
const PREFIX: usize = 7;
const SEALED_KEY: usize = NONCE_LEN + KEY + TAG;
const HEADER: usize = MAGIC.len() + SEALED_KEY + PREFIX;

/// A key's AES-256-GCM cipher.
fn cipher(key: &TaskKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.bytes()).expect("a 32-byte key"))
}

fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("the system's random number generator failed"))?;
    Ok(bytes)
}

fn segment_nonce(prefix: &[u8; PREFIX], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..PREFIX].copy_from_slice(prefix);
    nonce[PREFIX..PREFIX + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// Encrypts what is written to it into `inner`; [`Encrypt::finish`] seals the last
/// segment and returns `inner`.
pub struct Encrypt<W: Write> {
    inner: W,
    cipher: LessSafeKey,
    prefix: [u8; PREFIX],
    counter: u32,
    pending: Vec<u8>,
}

impl<W: Write> Encrypt<W> {
    pub fn new(mut inner: W, key: &TaskKey) -> io::Result<Encrypt<W>> {
        let data_key: [u8; KEY] = random()?;
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut sealed = data_key.to_vec();
        cipher(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut sealed,
            )
            .map_err(|_| io::Error::other("sealing the chunk's data key failed"))?;
        let prefix: [u8; PREFIX] = random()?;
        inner.write_all(MAGIC)?;
        inner.write_all(&nonce)?;
        inner.write_all(&sealed)?;
        inner.write_all(&prefix)?;
        Ok(Encrypt {
            inner,
            cipher: cipher(&TaskKey::from_bytes(data_key)),
            prefix,
            counter: 0,
            pending: Vec::with_capacity(SEGMENT + TAG),
        })
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    fn seal_pending(&mut self, last: bool) -> io::Result<()> {
        let nonce = segment_nonce(&self.prefix, self.counter, last);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("a chunk of more than 256 TiB cannot be encrypted"))?;
        self.cipher
            .seal_in_place_append_tag(nonce, Aad::empty(), &mut self.pending)
            .map_err(|_| io::Error::other("encrypting a segment failed"))?;
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.seal_pending(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encrypt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full segment is sealed only when more data follows: the last one is marked.
        if self.pending.len() == SEGMENT {
            self.seal_pending(false)?;
        }
        let n = buf.len().min(SEGMENT - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an encrypted chunk fed in pieces of any size; [`Decrypt::push`] returns the
/// data it could check so far, [`Decrypt::finish`] the rest, or an error when the file was
/// changed, cut off, or sealed under another key.
pub struct Decrypt {
    key: TaskKey,
    cipher: Option<LessSafeKey>,
    prefix: [u8; PREFIX],
    counter: u32,
    buffer: Vec<u8>,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Decrypt {
    pub fn new(key: &TaskKey) -> Decrypt {
        Decrypt {
            key: key.clone(),
            cipher: None,
            prefix: [0; PREFIX],
            counter: 0,
            buffer: Vec::with_capacity(2 * (SEGMENT + TAG)),
        }
    }

    fn open_header(&mut self) -> io::Result<()> {
        if &self.buffer[..MAGIC.len()] != MAGIC {
            return Err(damaged(
                "not a dbhaul encrypted chunk (it does not start with DBHAULE1): was it \
                 written with files.encryption_key_env?",
            ));
        }
        let at = MAGIC.len();
        let nonce: [u8; NONCE_LEN] = self.buffer[at..at + NONCE_LEN].try_into().expect("12");
        let mut sealed = self.buffer[at + NONCE_LEN..at + SEALED_KEY].to_vec();
        let data_key = cipher(&self.key)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut sealed,
            )
            .map_err(|_| {
                damaged(
                    "the chunk's data key does not open with this key: it was encrypted with \
                     another files.encryption_key_env value, or its header is damaged",
                )
            })?;
        let mut key = [0u8; KEY];
        key.copy_from_slice(data_key);
        self.cipher = Some(cipher(&TaskKey::from_bytes(key)));
        self.prefix
            .copy_from_slice(&self.buffer[at + SEALED_KEY..HEADER]);
        self.buffer.drain(..HEADER);
        Ok(())
    }

    fn open_segment(&mut self, len: usize, last: bool) -> io::Result<Vec<u8>> {
        let cipher = self.cipher.as_ref().expect("header opened");
        let nonce = segment_nonce(&self.prefix, self.counter, last);
        self.counter = self.counter.wrapping_add(1);
        let mut segment: Vec<u8> = self.buffer.drain(..len).collect();
        let plain = cipher
            .open_in_place(nonce, Aad::empty(), &mut segment)
            .map_err(|_| {
                damaged(
                    "an encrypted segment fails its check: the chunk was changed, reordered or \
                     cut off",
                )
            })?
            .len();
        segment.truncate(plain);
        Ok(segment)
    }

    pub fn push(&mut self, piece: &[u8]) -> io::Result<Vec<u8>> {
        self.buffer.extend_from_slice(piece);
        if self.cipher.is_none() {
            if self.buffer.len() < HEADER {
                return Ok(Vec::new());
            }
            self.open_header()?;
        }
        let mut out = Vec::new();
        // A full segment is known not to be the last once more bytes follow it.
        while self.buffer.len() > SEGMENT + TAG {
            out.extend(self.open_segment(SEGMENT + TAG, false)?);
        }
        Ok(out)
    }

    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        if self.cipher.is_none() {
            if self.buffer.len() < HEADER {
                return Err(damaged("the encrypted chunk is cut off inside its header"));
            }
            self.open_header()?;
        }
        if self.buffer.len() < TAG {
            return Err(damaged(
                "the encrypted chunk is cut off: its last segment is missing",
            ));
        }
        let len = self.buffer.len();
        self.open_segment(len, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TaskKey {
        TaskKey::from_secret(&Secret::new(hex::encode([byte; 32]))).unwrap()
    }

    fn encrypt(data: &[u8], key: &TaskKey) -> Vec<u8> {
        let mut writer = Encrypt::new(Vec::new(), key).unwrap();
        for piece in data.chunks(10_000) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    fn decrypt(file: &[u8], key: &TaskKey, piece: usize) -> io::Result<Vec<u8>> {
        let mut reader = Decrypt::new(key);
        let mut out = Vec::new();
        for p in file.chunks(piece) {
            out.extend(reader.push(p)?);
        }
        out.extend(reader.finish()?);
        Ok(out)
    }

    #[test]
    fn data_of_every_shape_comes_back_in_pieces_of_any_size() {
        let k = key(7);
        for size in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            200_003,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let file = encrypt(&data, &k);
            assert_eq!(
                file.len(),
                HEADER + data.len() + TAG * data.len().div_ceil(SEGMENT).max(1),
                "size {size}"
            );
            for piece in [1, 7, 4096, SEGMENT + TAG, 1 << 20] {
                assert_eq!(
                    decrypt(&file, &k, piece).unwrap(),
                    data,
                    "size {size}, piece {piece}"
                );
            }
        }
    }

    #[test]
    fn a_changed_cut_or_foreign_chunk_fails_its_check() {
        let k = key(1);
        let data = vec![42u8; 3 * SEGMENT + 10];
        let file = encrypt(&data, &k);
        let message = |r: io::Result<Vec<u8>>| r.unwrap_err().to_string();

        let mut flipped = file.clone();
        flipped[HEADER + 100] ^= 1;
        assert!(message(decrypt(&flipped, &k, 4096)).contains("fails its check"));
        // Cut at a segment boundary: the last segment left is not marked last.
        let cut = &file[..HEADER + 2 * (SEGMENT + TAG)];
        assert!(message(decrypt(cut, &k, 4096)).contains("fails its check"));
        assert!(message(decrypt(&file[..20], &k, 4096)).contains("cut off inside its header"));
        assert!(
            message(decrypt(&file, &key(2), 4096)).contains("another files.encryption_key_env")
        );
        assert!(message(decrypt(b"\x1f\x8b plain gzip, not encrypted at all............................................", &k, 4096)).contains("not a dbhaul encrypted chunk"));
        // Two encryptions of the same data differ (fresh data key and nonces).
        assert_ne!(encrypt(&data, &k), file);
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(TaskKey::from_secret(&Secret::new("00".repeat(32))).is_ok());
        let short = TaskKey::from_secret(&Secret::new("abcd".into())).unwrap_err();
        assert!(
            short.contains("64 hex digits") && short.contains("4 characters"),
            "{short}"
        );
        assert!(TaskKey::from_secret(&Secret::new("zz".repeat(32))).is_err());
        assert_eq!(format!("{:?}", key(3)), "TaskKey(***)");
    }
}
