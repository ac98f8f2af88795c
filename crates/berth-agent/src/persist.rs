//! The agent's data directory: small JSON files written atomically (write to
//! a temporary file, then rename), one per record.

use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A file name for a key such as a task ARN: its last path segment, with
/// anything but `[A-Za-z0-9_-]` replaced.
pub fn file_name(key: &str) -> String {
    let id = key.rsplit('/').next().unwrap_or(key);
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}.json")
}

pub fn write<T: Serialize + ?Sized>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, dir.join(name))
}

pub fn read<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every readable `*.json` record of `dir`, by file name; unreadable ones
/// are skipped with a warning rather than stopping the agent.
pub fn read_all<T: DeserializeOwned>(dir: &Path) -> Vec<(String, T)> {
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return records;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match read(&path) {
            Ok(Some(record)) => records.push((name, record)),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "skipping unreadable record")
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let name = file_name("arn:aws:ecs:us-east-1:1:task/default/abc.def");
        assert_eq!(name, "abc_def.json");
        write(dir.path(), &name, &vec![1, 2]).unwrap();
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let all: Vec<(String, Vec<i32>)> = read_all(dir.path());
        assert_eq!(all, vec![(name.clone(), vec![1, 2])]);
        remove(dir.path(), &name).unwrap();
        remove(dir.path(), &name).unwrap();
        assert!(read::<Vec<i32>>(&dir.path().join(&name)).unwrap().is_none());
    }
}
