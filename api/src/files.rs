//! Files in and out of a run: what a request puts in the run's working
//! directory ([`InputFile`]), what a response brings back ([`OutputFile`]),
//! and the one rule for a path on the wire ([`normalise_path`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use base64::Engine as _;

/// How a file's `content` is written on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The bytes are the UTF-8 of the string.
    #[default]
    Utf8,
    /// The bytes are the string's standard base64 (RFC 4648, with padding).
    Base64,
}

/// A file to place in the run's working directory (`/sandbox`) before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct InputFile {
    /// Relative to the working directory, `/`-separated, e.g. `data/input.csv`;
    /// no `..`, no leading `/`, no empty name.
    pub path: String,
    pub content: String,
    /// `utf8` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

object_only!(InputFile, "a JSON object (a file)");

impl InputFile {
    /// A UTF-8 file.
    pub fn text(path: impl Into<String>, content: impl Into<String>) -> InputFile {
        InputFile {
            path: path.into(),
            content: content.into(),
            encoding: None,
        }
    }

    /// A binary file, base64 on the wire.
    pub fn binary(path: impl Into<String>, bytes: &[u8]) -> InputFile {
        InputFile {
            path: path.into(),
            content: base64::engine::general_purpose::STANDARD.encode(bytes),
            encoding: Some(Encoding::Base64),
        }
    }

    /// The file's bytes, or why its content does not decode.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match self.encoding.unwrap_or_default() {
            Encoding::Utf8 => Ok(self.content.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&self.content)
                .map_err(|e| format!("`content` of `{}` is not valid base64: {e}", self.path)),
        }
    }
}

/// A file the run created or changed under its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputFile {
    /// Relative to the working directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `utf8` when the bytes are valid UTF-8, else `base64`; `null` with `content`.
    pub encoding: Option<Encoding>,
    /// `null` when the file did not fit in `output_files_bytes` (and
    /// `truncated.files` is true): it is listed, not returned.
    pub content: Option<String>,
}

impl OutputFile {
    /// `bytes` as a returned file: UTF-8 text when it is, else base64.
    pub fn with_content(path: String, bytes: &[u8]) -> OutputFile {
        let (encoding, content) = match std::str::from_utf8(bytes) {
            Ok(text) => (Encoding::Utf8, text.to_owned()),
            Err(_) => (
                Encoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ),
        };
        OutputFile {
            path,
            size: bytes.len() as u64,
            encoding: Some(encoding),
            content: Some(content),
        }
    }

    /// Bytes `bytes` take as this file's `content` on the wire: the JSON
    /// string of the text when it is UTF-8 (escapes included: a control
    /// byte takes up to six), else the base64.
    pub fn content_wire_len(bytes: &[u8]) -> u64 {
        match std::str::from_utf8(bytes) {
            Ok(text) => json_string_len(text),
            Err(_) => (bytes.len() as u64).div_ceil(3) * 4,
        }
    }

    /// A file listed without its content (it did not fit).
    pub fn omitted(path: String, size: u64) -> OutputFile {
        OutputFile {
            path,
            size,
            encoding: None,
            content: None,
        }
    }

    /// The file's bytes; `None` when it was omitted or does not decode.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let content = self.content.as_ref()?;
        match self.encoding? {
            Encoding::Utf8 => Some(content.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(content).ok(),
        }
    }
}

/// Bytes `text` takes inside a JSON string as serde_json writes it.
pub fn json_string_len(text: &str) -> u64 {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// The file a request runs when it names none.
pub const DEFAULT_ENTRY: &str = "main.py";
/// Longest name of one path component, in bytes (as `NAME_MAX` on Linux).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a request's path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Absolute,
    Parent,
    Nul,
    Backslash,
    NameTooLong,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::Empty => "is empty or names the working directory itself",
            PathError::Absolute => "is absolute; paths are relative to the working directory",
            PathError::Parent => "contains `..`",
            PathError::Nul => "contains a NUL byte",
            PathError::Backslash => "contains `\\`; the separator is `/`",
            PathError::NameTooLong => "has a component longer than 255 bytes",
        })
    }
}

/// A request path in its one normal form: components joined by a single
/// `/`, with `.` and empty components dropped (`./a//b/` → `a/b`). A path
/// that is absolute, climbs with `..`, names nothing, holds NUL or `\`, or
/// has a component past [`MAX_NAME_BYTES`] is refused.
pub fn normalise_path(path: &str) -> Result<String, PathError> {
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Parent),
            name if name.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong),
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused_with_the_reason() {
        assert_eq!(normalise_path("main.py").unwrap(), "main.py");
        assert_eq!(normalise_path("./a//b/./c.txt/").unwrap(), "a/b/c.txt");
        assert_eq!(normalise_path("é/データ.csv").unwrap(), "é/データ.csv");
        for (bad, why) in [
            ("", PathError::Empty),
            (".", PathError::Empty),
            ("./", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::Parent),
            ("a/../../x", PathError::Parent),
            ("a/..", PathError::Parent),
            ("a\0b", PathError::Nul),
            ("a\\b", PathError::Backslash),
        ] {
            assert_eq!(normalise_path(bad), Err(why), "{bad:?}");
        }
        assert_eq!(normalise_path(&"n".repeat(255)).unwrap().len(), 255);
        assert_eq!(normalise_path(&"n".repeat(256)), Err(PathError::NameTooLong));
    }

    #[test]
    fn contents_round_trip_in_both_encodings() {
        let bin = [0u8, 159, 146, 150, 255];
        let f = InputFile::binary("x.bin", &bin);
        assert_eq!(f.bytes().unwrap(), bin);
        assert_eq!(InputFile::text("t", "héllo").bytes().unwrap(), "héllo".as_bytes());
        let bad = InputFile {
            encoding: Some(Encoding::Base64),
            ..InputFile::text("b", "not base64!")
        };
        assert!(bad.bytes().unwrap_err().contains("`b`"));
        let out = OutputFile::with_content("o".into(), &bin);
        assert_eq!((out.encoding, out.size), (Some(Encoding::Base64), 5));
        assert_eq!(out.bytes().unwrap(), bin);
        let text = OutputFile::with_content("o".into(), b"plain");
        assert_eq!(
            (text.encoding, text.content.as_deref()),
            (Some(Encoding::Utf8), Some("plain"))
        );
        assert_eq!(OutputFile::omitted("o".into(), 9).bytes(), None);
    }

    #[test]
    fn wire_lengths_are_what_serde_json_writes() {
        for text in ["plain", "quote \" and \\", "ctl \u{1}\u{1f}\n\t", "é データ", ""] {
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(json_string_len(text), json.len() as u64 - 2, "{text:?}");
            let file = OutputFile::with_content("p".into(), text.as_bytes());
            let content = serde_json::to_string(&file.content).unwrap();
            assert_eq!(
                OutputFile::content_wire_len(text.as_bytes()),
                content.len() as u64 - 2
            );
        }
        for bin in [&[0xffu8][..], &[0xff, 0], &[0xff, 0, 1], &[0xff, 0, 1, 2]] {
            let file = OutputFile::with_content("p".into(), bin);
            assert_eq!(
                OutputFile::content_wire_len(bin),
                file.content.unwrap().len() as u64
            );
        }
    }

    #[test]
    fn files_are_objects_with_known_fields_only() {
        assert!(serde_json::from_str::<InputFile>(r#"{"path": "a", "content": "", "mode": 1}"#).is_err());
        assert!(serde_json::from_str::<InputFile>(r#"["a", ""]"#).is_err());
        assert!(
            serde_json::from_str::<InputFile>(r#"{"path": "a", "content": "", "encoding": "hex"}"#).is_err()
        );
        let f: InputFile =
            serde_json::from_str(r#"{"path": "a", "content": "x", "encoding": null}"#).unwrap();
        assert_eq!(f, InputFile::text("a", "x"));
    }
}
