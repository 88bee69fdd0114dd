//! The state on disk, in the reference plugin's format, so that a node can
//! switch between the reference's host-local and this one with containers
//! running:
//!
//! ```text
//! <dataDir>/<network>/lock                 empty; flock(2)ed around every change
//! <dataDir>/<network>/<ip>                 "<container id>\r\n<ifname>" (no newline at the end);
//!                                          older reference versions wrote only "<container id>"
//! <dataDir>/<network>/last_reserved_ip.<N> the last address reserved from range set N
//! ```
//!
//! One file of our own sits beside them: `attachment.<container id>:<ifname>`
//! lists the addresses an attachment got, one a line. It lets ADD refuse a
//! second ADD of the same attachment by opening one file instead of reading
//! every address file (what the reference does, which makes its ADD slower
//! with every address held). It is only a hint: every address in it is
//! checked against its address file, and the reference ignores it (its
//! content is never a container id and interface).
//!
//! Every file is opened relative to the network's directory, which is
//! opened without following a symbolic link; files are opened with
//! `O_NOFOLLOW`, so a link planted in the directory is never followed.

use std::fs::File;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag, AT_FDCWD};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use pkg::spec::{validate_network_name, Attachment};
use pkg::{Error, Result};

/// Name of the lock file, shared with the reference.
const LOCK: &str = "lock";
/// Prefix of the files holding each range set's last reservation.
const LAST_RESERVED: &str = "last_reserved_ip.";
/// Prefix of this plugin's per-attachment index files.
const INDEX: &str = "attachment.";
/// Separates the container id from the interface name in address files.
const LINE_BREAK: &str = "\r\n";
/// Address files are small; anything longer is not one of ours.
const MAX_FILE: u64 = 4096;

/// Who holds an address, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// `<container id>\r\n<ifname>`.
    Attachment { id: String, ifname: String },
    /// A file from an older reference version: the container id only.
    Legacy { id: String },
}

impl Holder {
    fn parse(content: &str) -> Option<Holder> {
        let content = content.trim();
        if content.is_empty() {
            return None;
        }
        Some(match content.split_once(LINE_BREAK) {
            Some((id, ifname)) => Holder::Attachment {
                id: id.trim().into(),
                ifname: ifname.trim().into(),
            },
            None => Holder::Legacy { id: content.into() },
        })
    }

    /// True when this is exactly the attachment (`id`, `ifname`).
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        matches!(self, Holder::Attachment { id: i, ifname: n } if i == id && n == ifname)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Attachment { id, ifname } => {
                write!(f, "container {id} interface {ifname}")
            }
            Holder::Legacy { id } => write!(f, "container {id}"),
        }
    }
}

/// One network's state directory, locked for as long as the value lives.
pub struct Store {
    dir: OwnedFd,
    path: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Opens `<data_dir>/<network>`, creating it (mode 0755, as the
    /// reference) and its lock file when missing, and takes the lock.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        validate_network_name(network)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(data_dir)
            .map_err(|e| Error::file("creating directory", data_dir, e))?;
        let base = open_base(data_dir)?;
        match mkdirat(&base, network, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error::file(
                    "creating directory",
                    data_dir.join(network),
                    e.into(),
                ))
            }
        }
        Store::lock(base, data_dir.join(network), network)
    }

    /// Like [`Store::open`] without creating anything: `None` when the
    /// network's directory does not exist (nothing is held).
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<Store>> {
        validate_network_name(network)?;
        let base = match open_base(data_dir) {
            Err(Error::File { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            other => other?,
        };
        match Store::lock(base, data_dir.join(network), network) {
            Err(Error::File { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    fn lock(base: OwnedFd, path: PathBuf, network: &str) -> Result<Store> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = openat(&base, network, flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => Error::file(
                "opening",
                &path,
                std::io::Error::other(
                    "it is a symbolic link or not a directory; refusing to use it",
                ),
            ),
            e => Error::file("opening", &path, e.into()),
        })?;
        let lock_path = path.join(LOCK);
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir, LOCK, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::file("opening lock file", &lock_path, e.into()))?;
        let mut file = File::from(fd);
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => break lock,
                Err((f, Errno::EINTR)) => file = f,
                Err((_, e)) => return Err(Error::file("locking", &lock_path, e.into())),
            }
        };
        Ok(Store {
            dir,
            path,
            _lock: lock,
        })
    }

    /// The network's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `<ip>` for the attachment; `false` when the file (or
    /// anything else by that name) already exists.
    pub fn reserve(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool> {
        let name = ip.to_string();
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(
            &self.dir,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(Error::file("creating", self.path.join(&name), e.into())),
        };
        let content = format!("{id}{LINE_BREAK}{ifname}");
        if let Err(e) = File::from(fd).write_all(content.as_bytes()) {
            let _ = unlinkat(&self.dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(Error::file("writing", self.path.join(&name), e));
        }
        Ok(true)
    }

    /// Removes `<ip>`; an address already gone is not an error.
    pub fn release(&self, ip: IpAddr) -> Result<()> {
        self.remove(&ip.to_string())
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Result<Option<Holder>> {
        Ok(self.read(&ip.to_string())?.and_then(|c| Holder::parse(&c)))
    }

    /// The address last reserved from range set `set`, if recorded.
    pub fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>> {
        let content = self.read(&format!("{LAST_RESERVED}{set}"))?;
        Ok(content.and_then(|c| c.trim().parse().ok()))
    }

    /// Records `ip` as the last address reserved from range set `set`.
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<()> {
        self.write(&format!("{LAST_RESERVED}{set}"), &ip.to_string())
    }

    /// Every address file and its holder (reads the whole directory).
    pub fn held(&self) -> Result<Vec<(IpAddr, Holder)>> {
        let mut out = Vec::new();
        for name in self.names()? {
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            if let Some(holder) = self.read(&name)?.and_then(|c| Holder::parse(&c)) {
                out.push((ip, holder));
            }
        }
        Ok(out)
    }

    /// Releases every address the attachment holds (the legacy files of its
    /// container when it holds none in the current format, as the reference
    /// does) and its index file. Returns the released addresses.
    pub fn release_attachment(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let held = self.held()?;
        let mut mine: Vec<IpAddr> = held
            .iter()
            .filter(|(_, h)| h.is(id, ifname))
            .map(|(ip, _)| *ip)
            .collect();
        if mine.is_empty() {
            mine = held
                .iter()
                .filter(|(_, h)| matches!(h, Holder::Legacy { id: i } if i == id))
                .map(|(ip, _)| *ip)
                .collect();
        }
        for ip in &mine {
            self.release(*ip)?;
        }
        self.remove(&index_name(id, ifname))?;
        Ok(mine)
    }

    /// The addresses the attachment's index lists that it still holds.
    pub fn indexed(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let Some(content) = self.read(&index_name(id, ifname))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for ip in content.lines().filter_map(|l| l.trim().parse().ok()) {
            if self.holder(ip)?.is_some_and(|h| h.is(id, ifname)) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// Writes the attachment's index.
    pub fn write_index(&self, id: &str, ifname: &str, ips: &[IpAddr]) -> Result<()> {
        let content: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        self.write(&index_name(id, ifname), &content)
    }

    /// GC: releases every address whose holder is not a valid attachment
    /// (a legacy file is kept when its container has a valid attachment),
    /// and the index files of the others. Keeps going after a failure and
    /// reports them all.
    pub fn release_all_but(&self, valid: &[Attachment]) -> Result<Vec<IpAddr>> {
        let keep = |id: &str, ifname: Option<&str>| {
            valid
                .iter()
                .any(|a| a.container_id == id && ifname.is_none_or(|n| a.ifname == n))
        };
        let mut released = Vec::new();
        let mut failures = Vec::new();
        for (ip, holder) in self.held()? {
            let kept = match &holder {
                Holder::Attachment { id, ifname } => keep(id, Some(ifname)),
                Holder::Legacy { id } => keep(id, None),
            };
            if kept {
                continue;
            }
            match self.release(ip) {
                Ok(()) => released.push(ip),
                Err(e) => failures.push(e.to_string()),
            }
        }
        for name in self.names()? {
            let Some((id, ifname)) = name.strip_prefix(INDEX).and_then(|r| r.split_once(':'))
            else {
                continue;
            };
            if !keep(id, Some(ifname)) {
                if let Err(e) = self.remove(&name) {
                    failures.push(e.to_string());
                }
            }
        }
        if failures.is_empty() {
            Ok(released)
        } else {
            Err(Error::new(
                pkg::spec::Code::Io,
                format!("GC in {}: {}", self.path.display(), failures.join("; ")),
            ))
        }
    }

    /// The directory's entry names (a fresh open of the directory, so
    /// listings never share a position).
    fn names(&self) -> Result<Vec<String>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.dir, ".", flags, Mode::empty())
            .map_err(|e| Error::file("listing", &self.path, e.into()))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| Error::file("listing", &self.path, e.into()))?;
            if let Ok(name) = entry.file_name().to_str() {
                if name != "." && name != ".." {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// A small file's content; `None` when it does not exist or is a symbolic link.
    fn read(&self, name: &str) -> Result<Option<String>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(Error::file("opening", self.path.join(name), e.into())),
        };
        let mut content = String::new();
        match File::from(fd).take(MAX_FILE).read_to_string(&mut content) {
            Ok(_) => Ok(Some(content)),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
            Err(e) => Err(Error::file("reading", self.path.join(name), e)),
        }
    }

    /// Replaces a file's content; a symbolic link in its place is removed,
    /// not followed.
    ///
    /// The new content is written over the old and the file then cut to its
    /// length, rather than opened with `O_TRUNC`: ext4 flushes a file that
    /// was truncated to zero and rewritten when it is closed
    /// (`auto_da_alloc`), which costs milliseconds on every ADD.
    fn write(&self, name: &str, content: &str) -> Result<()> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o600);
        let fd = match openat(&self.dir, name, flags, mode) {
            Err(Errno::ELOOP) => {
                self.remove(name)?;
                openat(&self.dir, name, flags, mode)
            }
            other => other,
        }
        .map_err(|e| Error::file("opening", self.path.join(name), e.into()))?;
        let mut file = File::from(fd);
        file.write_all(content.as_bytes())
            .and_then(|()| file.set_len(content.len() as u64))
            .map_err(|e| Error::file("writing", self.path.join(name), e))
    }

    fn remove(&self, name: &str) -> Result<()> {
        match unlinkat(&self.dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::file("removing", self.path.join(name), e.into())),
        }
    }
}

/// Opens the data directory itself (a symbolic link there is the
/// administrator's choice and is followed).
fn open_base(data_dir: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    openat(AT_FDCWD, data_dir, flags, Mode::empty())
        .map_err(|e| Error::file("opening", data_dir, e.into()))
}

fn index_name(id: &str, ifname: &str) -> String {
    // Neither a container id nor an interface name may contain ':'.
    format!("{INDEX}{id}:{ifname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn test_holder_parse_formats() {
        assert_eq!(
            Holder::parse("c1\r\neth0"),
            Some(Holder::Attachment {
                id: "c1".into(),
                ifname: "eth0".into()
            })
        );
        assert_eq!(
            Holder::parse("c1\n"),
            Some(Holder::Legacy { id: "c1".into() })
        );
        assert_eq!(Holder::parse(" \n"), None);
        assert!(Holder::parse("c1\r\neth0").unwrap().is("c1", "eth0"));
        assert!(!Holder::parse("c1").unwrap().is("c1", "eth0"));
    }

    #[test]
    fn test_store_reserve_writes_reference_format() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        assert!(store.reserve(ip("10.0.0.2"), "c1", "eth0").unwrap());
        assert!(!store.reserve(ip("10.0.0.2"), "c2", "eth0").unwrap());
        store.set_last_reserved(0, ip("10.0.0.2")).unwrap();
        let dir = tmp.path().join("net");
        assert_eq!(std::fs::read(dir.join("10.0.0.2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            std::fs::read(dir.join("last_reserved_ip.0")).unwrap(),
            b"10.0.0.2"
        );
        assert_eq!(store.last_reserved(0).unwrap(), Some(ip("10.0.0.2")));
        assert_eq!(store.last_reserved(1).unwrap(), None);
    }

    #[test]
    fn test_store_release_attachment_and_legacy() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let dir = tmp.path().join("net");
        std::fs::write(dir.join("10.0.0.9"), "c1").unwrap();
        store.reserve(ip("10.0.0.2"), "c1", "eth0").unwrap();
        store.reserve(ip("10.0.0.3"), "c1", "eth1").unwrap();
        store.write_index("c1", "eth0", &[ip("10.0.0.2")]).unwrap();
        assert_eq!(store.indexed("c1", "eth0").unwrap(), [ip("10.0.0.2")]);
        // The current format first: the legacy file stays.
        assert_eq!(
            store.release_attachment("c1", "eth0").unwrap(),
            [ip("10.0.0.2")]
        );
        assert!(store.indexed("c1", "eth0").unwrap().is_empty());
        store.release_attachment("c1", "eth1").unwrap();
        assert!(dir.join("10.0.0.9").exists());
        // Nothing in the current format left: the legacy file goes.
        assert_eq!(
            store.release_attachment("c1", "eth0").unwrap(),
            [ip("10.0.0.9")]
        );
        assert!(store.held().unwrap().is_empty());
    }

    #[test]
    fn test_store_open_existing_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        assert!(Store::open_existing(&missing, "net").unwrap().is_none());
        assert!(Store::open_existing(tmp.path(), "net").unwrap().is_none());
        assert!(!missing.exists() && !tmp.path().join("net").exists());
    }

    #[test]
    fn test_store_refuses_symlinked_network_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("net")).unwrap();
        let e = Store::open(tmp.path(), "net").err().unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn test_store_refuses_bad_network_name() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Store::open(tmp.path(), "../x").is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn test_store_gc_keeps_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        std::fs::write(tmp.path().join("net/10.0.0.9"), "c1").unwrap();
        std::fs::write(tmp.path().join("net/10.0.0.8"), "gone").unwrap();
        store.reserve(ip("10.0.0.2"), "c1", "eth0").unwrap();
        store.reserve(ip("10.0.0.3"), "c2", "eth0").unwrap();
        store.write_index("c2", "eth0", &[ip("10.0.0.3")]).unwrap();
        let valid = [Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        let mut released = store.release_all_but(&valid).unwrap();
        released.sort();
        assert_eq!(released, [ip("10.0.0.3"), ip("10.0.0.8")]);
        let mut names = store.names().unwrap();
        names.sort();
        assert_eq!(names, ["10.0.0.2", "10.0.0.9", "lock"]);
    }
}
